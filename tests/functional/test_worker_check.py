"""``rescue-flow worker --check``: one line per check, exit 1 on any fault
(2 when the configuration is not valid, as for every command).

Each test breaks one thing in an otherwise good setup (kombu's in-memory
broker, SQLite, a simulated host, a free metrics port) and runs the command
through cli.main, as an operator would.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from rescue_flow import cli
from rescue_flow.simhost import SimulatedHost

CHECKS = ["config", "broker", "state folder", "persistence", "hyperv", "metrics"]


pytestmark = pytest.mark.usefixtures("restore_logging")

def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Setup:
    """A good config for a simulated host; ``change`` breaks one thing."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.state = tmp_path / "state"
        self.sections: dict[str, dict[str, Any]] = {
            "DEFAULT": {"host": "hv-check-1", "state_path": self.state,
                        "transport_url": "kombu+memory:////"},
            "hyperv": {"driver": "simulated", "instances_path": tmp_path / "instances"},
            "metrics": {"enabled": "true", "bind_host": "127.0.0.1", "port": closed_port()},
        }
        SimulatedHost.init(str(self.state / "simulated-host.sqlite"),
                           str(tmp_path / "instances"))

    def change(self, section: str, **values: Any) -> Setup:
        self.sections.setdefault(section, {}).update(values)
        return self

    def check(self, capsys: Any) -> tuple[int, dict[str, str], str]:
        """Exit code, {check name: what follows it}, and stderr."""
        path = self.tmp_path / "rescue-flow.conf"
        path.write_text("".join(
            f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
            for name, values in self.sections.items()))
        code = cli.main(["--config-file", str(path), "worker", "--check"])
        printed = capsys.readouterr()
        lines = {}
        for line in printed.out.splitlines():
            name, _, rest = line.partition("  ")
            lines[name.strip()] = rest.strip()
        return code, lines, printed.err


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def test_all_checks_pass_on_a_good_setup(setup, capsys) -> None:
    code, lines, err = setup.check(capsys)
    assert code == 0, lines
    assert list(lines) == CHECKS  # [nova] transport_url unset: one broker for both
    assert all(found.startswith("ok: ") for found in lines.values()), lines
    assert "also Nova's" in lines["broker"]
    assert "simulated host" in lines["hyperv"] and "0 VM(s)" in lines["hyperv"]
    assert err == ""


def test_a_broker_that_refuses_connections_fails_the_broker_check_only(
        setup, capsys) -> None:
    port = closed_port()
    code, lines, _ = setup.change(
        "DEFAULT", transport_url=f"rabbit://guest:guest@127.0.0.1:{port}/").check(capsys)
    assert code == 1
    assert lines["broker"].startswith("FAILED: cannot connect to amqp://guest:**@127.0.0.1")
    assert "Connection refused" in lines["broker"]
    assert [name for name, found in lines.items() if found.startswith("FAILED")] == [
        "broker"]


def test_novas_own_broker_is_checked_when_it_has_one(setup, capsys) -> None:
    port = closed_port()
    code, lines, _ = setup.change(
        "nova", transport_url=f"rabbit://nova:secret@127.0.0.1:{port}/nova").check(capsys)
    assert code == 1
    assert lines["broker"].startswith("ok: ")
    assert lines["nova broker"].startswith("FAILED: cannot connect to amqp://nova:**@")
    assert "secret" not in "".join(lines.values())


def test_no_nova_broker_check_when_the_worker_takes_no_nova_events(setup, capsys) -> None:
    code, lines, _ = setup.change(
        "nova", enabled="false", transport_url="rabbit://nova:x@127.0.0.1:1/").check(capsys)
    assert code == 0
    assert "nova broker" not in lines
    assert "also Nova's" not in lines["broker"]


def test_a_database_that_cannot_be_reached_fails_the_persistence_check(
        setup, capsys) -> None:
    url = f"postgresql+psycopg2://rescue_flow:secret@127.0.0.1:{closed_port()}/rescue_flow"
    code, lines, _ = setup.change("persistence", connection=url).check(capsys)
    assert code == 1
    assert lines["persistence"].startswith(
        "FAILED: postgresql+psycopg2://rescue_flow:***@127.0.0.1:")
    assert "Connection refused" in lines["persistence"]
    assert "secret" not in "".join(lines.values())


def test_a_connection_string_that_is_no_url_fails_the_persistence_check(
        setup, capsys) -> None:
    code, lines, _ = setup.change("persistence", connection="rescue_flow@db").check(capsys)
    assert code == 2
    assert lines["config"] == "FAILED: [persistence] connection: not an SQLAlchemy URL"
    assert lines["persistence"] == "FAILED: [persistence] connection is not an SQLAlchemy URL"


def test_a_database_driver_that_is_not_installed_fails_the_persistence_check(
        setup, capsys) -> None:
    code, lines, _ = setup.change("persistence", connection="nosuchdb://x/y").check(capsys)
    assert code == 2
    assert lines["config"] == ("FAILED: [persistence] connection: SQLAlchemy knows no "
                               "database 'nosuchdb'")
    assert lines["persistence"].startswith("FAILED: nosuchdb://x/y: NoSuchModuleError")


def test_a_missing_simulated_state_file_fails_the_hyperv_check(setup, capsys) -> None:
    (setup.state / "simulated-host.sqlite").unlink()
    code, lines, _ = setup.check(capsys)
    assert code == 1
    assert lines["hyperv"].startswith("FAILED: StateFileMissing: simulated host state file")
    assert "rescue-flow sim init" in lines["hyperv"]


def test_a_corrupt_simulated_state_file_fails_the_hyperv_check(setup, capsys) -> None:
    (setup.state / "simulated-host.sqlite").write_text("{not json")
    code, lines, _ = setup.check(capsys)
    assert code == 1
    assert lines["hyperv"].startswith("FAILED: ")


@pytest.mark.skipif(sys.platform == "win32", reason="os-win works on Windows")
def test_the_oswin_driver_off_windows_fails_the_hyperv_check(setup, capsys) -> None:
    code, lines, _ = setup.change("hyperv", driver="oswin").check(capsys)
    assert code == 1
    assert lines["hyperv"] == ("FAILED: [hyperv] driver = oswin needs Windows with "
                               "Hyper-V; here only [hyperv] driver = simulated works")


def test_a_metrics_port_in_use_fails_the_metrics_check(setup, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines, _ = setup.change("metrics", port=port).check(capsys)
    assert code == 1
    assert lines["metrics"].startswith(f"FAILED: cannot listen on 127.0.0.1 port {port}: ")


def test_metrics_that_are_off_need_no_port(setup, capsys) -> None:
    code, lines, _ = setup.change("metrics", enabled="false").check(capsys)
    assert code == 0
    assert lines["metrics"] == "ok: not served ([metrics] enabled = false)"


def test_a_value_of_the_wrong_type_fails_the_config_check_with_exit_2(setup, capsys) -> None:
    code, lines, _ = setup.change("worker", max_concurrent_flows="lots").check(capsys)
    assert code == 2
    assert lines["config"] == "FAILED: [worker] max_concurrent_flows: 'lots' is not a whole number"


def test_the_config_check_names_every_bad_value_in_its_one_line(setup, capsys) -> None:
    setup.change("worker", max_concurrent_flows="0").change("metrics", port="99999")
    code, lines, _ = setup.change("hyperv", soft_shutdown_timeout="abc").check(capsys)
    assert code == 2
    assert lines["config"] == (
        "FAILED: [hyperv] soft_shutdown_timeout: 'abc' is not a whole number; "
        "[worker] max_concurrent_flows: must be at least 1; "
        "[metrics] port: must be at most 65535")


def test_a_host_name_that_cannot_name_a_queue_fails_the_config_check(setup, capsys) -> None:
    code, lines, _ = setup.change("DEFAULT", host="hv 01").check(capsys)
    assert code == 2
    assert lines["config"].startswith("FAILED: [DEFAULT] host: host must be a host name")


def test_a_state_folder_that_cannot_be_created_fails_its_check(setup, capsys) -> None:
    blocker = setup.tmp_path / "a-file"
    blocker.write_text("")
    code, lines, _ = setup.change("DEFAULT", state_path=blocker / "state").check(capsys)
    assert code == 1
    assert lines["state folder"].startswith(f"FAILED: [DEFAULT] state_path {blocker}")


def test_a_missing_config_file_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    code = cli.main(["--config-file", str(tmp_path / "nope.conf"), "worker", "--check"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rescue-flow worker: cannot load the configuration: ")
    assert err.count("\n") == 1
    assert "nope.conf" in err
