"""Every failure an operator's environment can cause ends a command in one line.

The table: each broken environment x each command that reads or writes the
state. A command the breakage concerns prints one line on stderr (what
failed, the file or option, what to do), exits with the documented code and
changes nothing on the simulated host or in the history; one it does not
concern works as usual. No traceback either way, unless --debug.

The environments are built from one template (a host with a rescued
instance and a history holding that request), copied per case.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID

from rescue_flow import cli
from rescue_flow.commands.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT
from rescue_flow.simhost import SimulatedHost

pytestmark = pytest.mark.usefixtures("restore_logging")

COMMANDS: dict[str, list[str]] = {
    "run": ["run", "unrescue", GEN1_UUID],
    "worker": ["worker"],
    "status": ["status"],
    "quarantined": ["quarantined"],
    "reset": ["reset", GEN1_UUID],
    "resume": ["resume"],
    "purge": ["purge", "--older-than", "30"],
    "sim show": ["sim", "show"],
}
EVERY = set(COMMANDS)
# The quarantine lives in the history: quarantined and reset read it there,
# and an earlier release's quarantine.json is imported when it is opened.
HISTORY = {"run", "worker", "status", "resume", "purge", "quarantined", "reset"}
HOST = {"run", "worker", "resume", "sim show"}
QUARANTINE = HISTORY


class Env:
    """One copy of the template: its config file and state folder."""

    def __init__(self, template: Path, root: Path) -> None:
        self.root = root
        self.missing_config = False
        self.state = root / "state"
        shutil.copytree(template / "state", self.state,
                        ignore=shutil.ignore_patterns("*-wal", "*-shm"))
        self.settings = {
            "DEFAULT": {"host": "hv-test", "state_path": str(self.state),
                        "transport_url": "kombu+memory:////"},
            "hyperv": {"driver": "simulated",
                       "instances_path": str(template / "instances"),
                       "soft_shutdown_timeout": "1", "power_state_poll_interval": "0.01"},
        }

    @property
    def config(self) -> Path:
        path = self.root / "rescue-flow.conf"
        path.write_text("".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
            for group, values in self.settings.items()))
        return path

    def set(self, group: str, **values: str) -> None:
        self.settings.setdefault(group, {}).update(values)

    def files(self) -> dict[str, bytes]:
        """What the host and the history hold, byte for byte (not the lock
        files, nor SQLite's -wal and -shm, which a reader may create)."""
        found = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.endswith((".lock", "-wal", "-shm")):
                found[str(path.relative_to(self.root))] = path.read_bytes()
        return found


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _bad_row(env: Env) -> None:
    with contextlib.closing(sqlite3.connect(env.state / "simulated-host.sqlite")) as db:
        db.execute("UPDATE entries SET value = 'not json' WHERE section = 'vms'")
        db.commit()


def _state_below_a_file(env: Env) -> None:
    (env.root / "a-file").write_text("")
    env.set("DEFAULT", state_path=str(env.root / "a-file" / "state"))


# name: (how to break it, the commands it stops, their exit code)
BROKEN: dict[str, tuple[Callable[[Env], None], set[str], int]] = {
    "state_path below a regular file": (_state_below_a_file, EVERY, EXIT_ENVIRONMENT),
    "history database overwritten": (
        lambda env: (env.state / "rescue-flow.sqlite").write_text("not a database\n"),
        HISTORY, EXIT_ENVIRONMENT),
    "history database damaged": (
        lambda env: _truncate(env.state / "rescue-flow.sqlite"), HISTORY, EXIT_ENVIRONMENT),
    "simulated host state file truncated": (
        lambda env: _truncate(env.state / "simulated-host.sqlite"), HOST, EXIT_ENVIRONMENT),
    "simulated host state file garbage": (
        lambda env: (env.state / "simulated-host.sqlite").write_text("garbage"),
        HOST, EXIT_ENVIRONMENT),
    "simulated host state file []": (
        lambda env: (env.state / "simulated-host.sqlite").write_text("[]"),
        HOST, EXIT_ENVIRONMENT),
    "a row of the simulated host's database that is not JSON": (
        _bad_row, HOST, EXIT_ENVIRONMENT),
    "quarantine list garbage": (
        lambda env: (env.state / "quarantine.json").write_text("{garbage"),
        QUARANTINE, EXIT_ENVIRONMENT),
    "quarantine list []": (
        lambda env: (env.state / "quarantine.json").write_text("[]"),
        QUARANTINE, EXIT_ENVIRONMENT),
    "soft_shutdown_timeout = abc": (
        lambda env: env.set("hyperv", soft_shutdown_timeout="abc"), EVERY, EXIT_BAD_INPUT),
    "port = 99999": (
        lambda env: env.set("metrics", port="99999"), EVERY, EXIT_BAD_INPUT),
    "max_concurrent_flows = 0": (
        lambda env: env.set("worker", max_concurrent_flows="0"), EVERY, EXIT_BAD_INPUT),
    "driver = hyperv": (
        lambda env: env.set("hyperv", driver="hyperv"), EVERY, EXIT_BAD_INPUT),
    "a transport_url with an unknown transport": (
        lambda env: env.set("DEFAULT", transport_url="memory://"), EVERY, EXIT_BAD_INPUT),
    # Found trying it as an operator, beyond the list:
    "a database URL SQLAlchemy has no dialect for": (
        lambda env: env.set("persistence", connection="nosuchdb://x/y"),
        EVERY, EXIT_BAD_INPUT),
    "debug = maybe (an option that is also a command-line option)": (
        lambda env: env.set("DEFAULT", debug="maybe"), EVERY, EXIT_BAD_INPUT),
    "[DEFAULT] log_file below a regular file": (
        lambda env: (_state_below_a_file(env), env.set(
            "DEFAULT", state_path=str(env.state), log_file=str(env.root / "a-file" / "x.log"))),
        EVERY, EXIT_ENVIRONMENT),
    "[DEFAULT] log_config_append names no file": (
        lambda env: env.set("DEFAULT", log_config_append=str(env.root / "logging.ini")),
        EVERY, EXIT_ENVIRONMENT),
    "[simulated] state_file is a folder": (
        lambda env: env.set("simulated", state_file=str(env.root)), HOST, EXIT_ENVIRONMENT),
}
if sys.platform != "win32":
    BROKEN["[hyperv] driver = oswin off Windows"] = (
        lambda env: env.set("hyperv", driver="oswin"), HOST - {"sim show"}, EXIT_BAD_INPUT)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A host with a rescued Gen1 instance, its request in the history."""
    root = tmp_path_factory.mktemp("template")
    state = root / "state"
    host = SimulatedHost.init(str(state / "simulated-host.sqlite"), str(root / "instances"))
    host.add_image(GEN1_IMAGE, 1, "vhd")
    host.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=1)
    env = Env.__new__(Env)
    env.root, env.state = root, state
    env.settings = {
        "DEFAULT": {"host": "hv-test", "state_path": str(state)},
        "hyperv": {"driver": "simulated", "instances_path": str(root / "instances"),
                   "soft_shutdown_timeout": "1", "power_state_poll_interval": "0.01"}}
    assert cli.main(["--config-file", str(env.config), "run", "rescue", GEN1_UUID]) == 0
    # Everything into the database file: the copies leave -wal and -shm out
    # (SQLite would replay a stale -wal over a database replaced by a test).
    for database in ("rescue-flow.sqlite", "simulated-host.sqlite"):
        with contextlib.closing(sqlite3.connect(state / database)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_environment_stops_a_command_with_one_line_and_changes_nothing(
        broken, command, template, tmp_path, capsys) -> None:
    breaks, stopped, expected_code = BROKEN[broken]
    env = Env(template, tmp_path)
    breaks(env)
    config = env.config
    before = env.files()

    code, err = _run(["--config-file", str(config), *COMMANDS[command]], capsys)

    assert "Traceback" not in err
    if command not in stopped:
        assert code == 0, err
        return
    assert code == expected_code, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"rescue-flow {command}: "), err
    assert env.files() == before, "the host or the history changed"


@pytest.mark.parametrize("broken", ["history database overwritten",
                                    "soft_shutdown_timeout = abc"])
def test_debug_adds_the_traceback_to_the_one_line(broken, template, tmp_path, capsys):
    breaks, _, expected_code = BROKEN[broken]
    env = Env(template, tmp_path)
    breaks(env)

    code, err = _run(["status", "--config-file", str(env.config), "--debug"], capsys)

    assert code == expected_code
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("rescue-flow status: ")


def test_the_lines_say_what_failed_where_and_what_to_do(template, tmp_path, capsys):
    env = Env(template, tmp_path)
    (env.state / "rescue-flow.sqlite").write_text("not a database\n")
    _bad_row(env)
    env.set("nova", enabled="false")

    _, status = _run(["--config-file", str(env.config), "status"], capsys)
    _, show = _run(["--config-file", str(env.config), "sim", "show"], capsys)

    database = env.state / "rescue-flow.sqlite"
    assert status == (
        f"rescue-flow status: the history database {database} is damaged (file is not "
        "a database): restore it from a backup, or move it and its -wal and -shm "
        "files aside to start an empty history\n")
    assert show.startswith(f"rescue-flow sim show: simulated host state file "
                           f"{env.state / 'simulated-host.sqlite'} cannot be read whole")
    assert "'rescue-flow sim init'" in show


def _without_root_powers() -> None:
    """In the child, before it runs Python: give up root's right to ignore
    file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), for good."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_state_folder_this_user_cannot_write_stops_every_command_with_one_line(
        template, tmp_path) -> None:
    """The state folder and its files read-only; as root, the commands run
    without the power to ignore that (CI runs as root)."""
    as_root = os.geteuid() == 0
    if as_root:
        probe = subprocess.run(["true"], preexec_fn=_without_root_powers, check=False)
        if probe.returncode != 0:
            pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    env = Env(template, tmp_path)
    config = env.config
    before = env.files()
    for path in [env.state, *env.state.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        for command, args in COMMANDS.items():
            proc = subprocess.run(
                [sys.executable, "-m", "rescue_flow.cli", "--config-file", str(config),
                 *args], capture_output=True, text=True, timeout=60, check=False,
                preexec_fn=_without_root_powers if as_root else None)
            assert "Traceback" not in proc.stderr, (command, proc.stderr)
            if command == "status" and proc.returncode == 0:
                continue  # SQLite may read a database it cannot write: fine
            assert proc.returncode == EXIT_ENVIRONMENT, (command, proc.stderr)
            assert proc.stderr.count("\n") == 1, (command, proc.stderr)
            assert proc.stderr.startswith(f"rescue-flow {command}: "), proc.stderr
    finally:
        for path in [env.state, *env.state.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert env.files() == before


# docs/troubleshooting.md's table of these lines, against the commands -------

TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _missing_config(env: Env) -> None:
    env.missing_config = True


def _no_server(env: Env) -> None:
    env.set("persistence", connection="postgresql+psycopg2://rescue_flow:secret@"
            f"127.0.0.1:{_closed_port()}/rescue_flow")


# The table's rows this test can stage here (the read-only rows need another
# user: test_a_state_folder_this_user_cannot_write_...), and a command each.
DOCUMENTED: dict[str, tuple[Callable[[Env], None], str]] = {
    "a value in the config file": (BROKEN["soft_shutdown_timeout = abc"][0], "status"),
    "a config file missing or not in ini form": (_missing_config, "status"),
    "`[DEFAULT] state_path` below a regular file": (_state_below_a_file, "quarantined"),
    "a damaged or overwritten history database": (
        BROKEN["history database overwritten"][0], "purge"),
    "a database server that does not answer": (_no_server, "status"),
    "no simulated host": (lambda env: (env.state / "simulated-host.sqlite").unlink(), "run"),
    "a damaged simulated host state file": (
        BROKEN["simulated host state file garbage"][0], "sim show"),
    "a damaged row in the simulated host's database": (_bad_row, "resume"),
    "a damaged quarantine list of an earlier release (`quarantine.json`, imported once)": (
        BROKEN["quarantine list garbage"][0], "reset"),
    "a database driver that is not installed": (
        lambda env: env.set("persistence", connection="mysql+mysqldb://u@h/x"),
        "quarantined"),
}
if sys.platform != "win32":
    DOCUMENTED["`[hyperv] driver = oswin` anywhere but Windows (`run`, `resume`, `worker`)"] \
        = (BROKEN["[hyperv] driver = oswin off Windows"][0], "resume")


def _documented_lines() -> dict[str, tuple[str, int]]:
    rows = {}
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    table = text[text.index("| What is wrong | The line after"):].split("\n\n")[0]
    for row in table.splitlines()[2:]:
        what, line, code = (cell.strip() for cell in row.strip("|").split(" | "))
        rows[what] = (re.search(r"`([^`]*)`", line).group(1), int(code))  # type: ignore[union-attr]
    return rows


def test_the_troubleshooting_table_lists_the_lines_this_test_checks() -> None:
    assert set(DOCUMENTED) <= set(_documented_lines())


@pytest.mark.parametrize("what", list(DOCUMENTED))
def test_each_line_in_the_troubleshooting_table_is_what_the_command_prints(
        what, template, tmp_path, capsys) -> None:
    if what.startswith("a database driver") and importlib.util.find_spec("MySQLdb"):
        pytest.skip("MySQLdb is installed here")
    documented, expected_code = _documented_lines()[what]
    breaks, command = DOCUMENTED[what]
    env = Env(template, tmp_path)
    breaks(env)
    config = env.config if not env.missing_config else tmp_path / "missing.conf"

    code, err = _run(["--config-file", str(config), *COMMANDS[command]], capsys)

    pattern = "".join(".+" if part.startswith("<") else re.escape(part)
                      for part in re.split(r"(<[^>]+>)", documented))
    assert code == expected_code, err
    assert re.fullmatch(f"rescue-flow {command}: {pattern}\n", err), (
        f"docs/troubleshooting.md says:\n{documented}\nthe command printed:\n{err}")
