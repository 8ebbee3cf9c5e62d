"""The service definitions and the smoke script run what the docs say.

- etc/systemd/rescue-flow.service: runs ``rescue-flow ... worker`` with a
  config file, stops it with a signal the worker takes as a graceful stop,
  restarts on failure, keeps the state folder, is hardened; and
  ``systemd-analyze verify`` accepts it when that tool is installed (skipped
  otherwise; no root needed).
- etc/windows/: the WinSW XML parses and runs the worker command in the
  documented layout; the install script installs that XML under its id.
- tools/hyperv-smoke.py: skips off Windows; against the simulated host it
  rescues, unrescues, checks and removes what it created.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rescue_flow import cli, config
from rescue_flow.commands.worker import _stop_signals
from rescue_flow.simhost import SimulatedHost

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "etc" / "systemd" / "rescue-flow.service"
WINSW_XML = ROOT / "etc" / "windows" / "rescue-flow-worker.xml"
INSTALL_PS1 = ROOT / "etc" / "windows" / "install-service.ps1"
SMOKE = ROOT / "tools" / "hyperv-smoke.py"


# systemd ---------------------------------------------------------------------

def _unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections of keys, a key may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.match(r"^\[(.+)\]$", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    """A systemd time span such as 10min, 90s, 1h 30min."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return _unit(UNIT.read_text(encoding="utf-8"))


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key} is not set in {UNIT.name}"
    return values[-1]


def test_unit_runs_the_worker_with_a_config_file(unit) -> None:
    command = shlex.split(_one(unit, "Service", "ExecStart"))
    assert os.path.isabs(command[0]) and command[0].endswith("/rescue-flow")
    args = cli.build_parser().parse_args(command[1:])
    assert args.command == "worker"
    assert args.config_file and all(os.path.isabs(path) for path in args.config_file)
    user = _one(unit, "Service", "User")
    assert user and user != "root"


def test_unit_stops_the_worker_gracefully_and_in_time(unit) -> None:
    kill_signal = getattr(signal, _one(unit, "Service", "KillSignal"))
    assert kill_signal in _stop_signals(), "the worker does not take KillSignal as a stop"
    assert _one(unit, "Service", "KillMode") == "mixed"
    timeout = _seconds(_one(unit, "Service", "TimeoutStopSec"))
    soft_shutdown = config.make_conf().hyperv.soft_shutdown_timeout
    assert timeout > 2 * soft_shutdown, "a flow with a soft shutdown would be killed"
    grace = config.make_conf().worker.graceful_shutdown_timeout
    assert timeout > grace, "systemd would kill the worker before its own grace time ends"
    assert _one(unit, "Service", "Restart") == "on-failure"


def test_unit_state_directory_is_the_default_state_path(unit) -> None:
    state_directory = _one(unit, "Service", "StateDirectory")
    if sys.platform != "win32":
        assert config.make_conf().state_path == f"/var/lib/{state_directory}"


def test_unit_is_hardened(unit) -> None:
    service = unit["Service"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes")):
        assert service.get(key) == [value], f"{key}={value} missing"
    assert service.get("CapabilityBoundingSet") == [""]
    assert _one(unit, "Install", "WantedBy") == "multi-user.target"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart to exist: point it at this venv's program.
    program = Path(sys.executable).parent / "rescue-flow"
    if not program.exists():
        program = Path(sys.executable)
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={program}", UNIT.read_text(),
                  flags=re.MULTILINE)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=120, check=False)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if UNIT.name in line]
    if proc.returncode != 0 and not ours:
        pytest.skip(f"systemd-analyze verify cannot run here: {proc.stderr.strip()[:300]}")
    # verify exits 0 on unknown keys, with a warning: any line about the unit fails.
    assert not ours and proc.returncode == 0, "\n".join(ours) or proc.stderr


# Windows ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def winsw() -> ET.Element:
    root = ET.parse(WINSW_XML).getroot()
    assert root.tag == "service"
    return root


def _text(root: ET.Element, tag: str) -> str:
    element = root.find(tag)
    assert element is not None and element.text, f"<{tag}> missing in {WINSW_XML.name}"
    return element.text.strip()


BASE = r"C:\OpenStack\rescue-flow\service"  # where install-service.ps1 puts the XML


def _at_base(path: str) -> str:
    return ntpath.normpath(path.replace("%BASE%", BASE))


def test_winsw_service_runs_the_worker_from_the_venv(winsw) -> None:
    assert _at_base(_text(winsw, "executable")) == \
        r"C:\OpenStack\rescue-flow\venv\Scripts\rescue-flow.exe"
    lexer = shlex.shlex(_text(winsw, "arguments"), posix=True)
    lexer.whitespace_split, lexer.escape = True, ""  # Windows paths keep their backslashes
    args = cli.build_parser().parse_args(list(lexer))
    assert args.command == "worker"
    assert [_at_base(path) for path in args.config_file] == \
        [r"C:\OpenStack\rescue-flow\etc\rescue-flow.conf"]


def test_winsw_service_stops_gracefully_restarts_and_logs(winsw) -> None:
    number, unit = re.match(r"^(\d+)\s*(ms|sec|secs|min|mins|hr|hour|hours)$",
                            _text(winsw, "stoptimeout")).groups()
    seconds = int(number) * {"ms": 0.001, "sec": 1, "secs": 1, "min": 60, "mins": 60,
                             "hr": 3600, "hour": 3600, "hours": 3600}[unit]
    assert seconds > 2 * config.make_conf().hyperv.soft_shutdown_timeout
    assert seconds > config.make_conf().worker.graceful_shutdown_timeout
    # WinSW's Ctrl+C reaches Python as SIGINT, which the worker takes as a stop.
    assert signal.SIGINT in _stop_signals()
    actions = [element.get("action") for element in winsw.findall("onfailure")]
    assert actions and set(actions) == {"restart"}
    log = winsw.find("log")
    assert log is not None and log.get("mode") in ("roll-by-size", "roll-by-time", "roll")
    assert _at_base(_text(winsw, "logpath")) == r"C:\OpenStack\rescue-flow\log"
    assert "vmms" in [element.text for element in winsw.findall("depend")]


def test_install_script_installs_this_definition(winsw) -> None:
    script = INSTALL_PS1.read_text(encoding="utf-8")
    service_id = _text(winsw, "id")
    assert WINSW_XML.name == f"{service_id}.xml", "WinSW reads <exe name>.xml"
    assert f"$ServiceId = '{service_id}'" in script
    assert '"$ServiceId.xml"' in script and '"$ServiceId.exe"' in script
    assert r"'venv\Scripts\rescue-flow.exe'" in script
    assert r"'etc\rescue-flow.conf'" in script


def _installer_check() -> list[str]:
    """The rescue-flow command line the install script runs as its check."""
    script = INSTALL_PS1.read_text(encoding="utf-8")
    found = re.search(r"^& \$Worker --config-file \$ConfigFile (.+?) \| Out-Null$", script,
                      re.MULTILINE)
    assert found, "install-service.ps1 no longer checks the config with rescue-flow"
    return found.group(1).split()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("value", "code"), [("60", 0), ("abc", 2), ("-1", 2)])
def test_install_scripts_check_really_loads_the_config(tmp_path: Path, capsys, value,
                                                       code) -> None:
    conf = tmp_path / "rescue-flow.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'state'}\n"
                    f"[hyperv]\nsoft_shutdown_timeout = {value}\n")

    assert cli.main(["--config-file", str(conf), *_installer_check()]) == code
    if code:
        assert "[hyperv] soft_shutdown_timeout" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_install_scripts_check_fails_on_a_state_folder_it_cannot_use(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    conf = tmp_path / "rescue-flow.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'a-file' / 'state'}\n")

    assert cli.main(["--config-file", str(conf), *_installer_check()]) == 5


# tools/hyperv-smoke.py --------------------------------------------------------

def _smoke(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "ignore", str(SMOKE), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(sys.platform == "win32", reason="on Windows it runs for real")
def test_smoke_script_skips_without_windows() -> None:
    proc = _smoke("--create-from", r"C:\OpenStack\Instances\_base\x.vhdx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "skipped: needs Windows with Hyper-V\n"


IMAGE = "8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a02"


@pytest.fixture
def sim_conf(tmp_path: Path) -> tuple[Path, SimulatedHost]:
    conf = tmp_path / "rescue-flow.conf"
    conf.write_text(
        f"[DEFAULT]\nhost = hv-smoke\nstate_path = {tmp_path / 'state'}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {tmp_path / 'vms'}\n"
        "soft_shutdown_timeout = 1\npower_state_poll_interval = 0.01\n"
        f"[simulated]\nstate_file = {tmp_path / 'sim.json'}\n"
        "[retry]\ninitial_backoff = 0\nmax_backoff = 0\n")
    sim = SimulatedHost.init(str(tmp_path / "sim.json"), str(tmp_path / "vms"))
    sim.add_image(IMAGE, 2, "vhdx")
    return conf, sim


def test_smoke_script_rescues_unrescues_and_cleans_up_on_the_simulated_host(
        sim_conf) -> None:
    conf, sim = sim_conf
    before = sim.view()
    image = Path(sim.view()["images"][IMAGE]["path"])
    proc = _smoke("--simulated", "--config-file", str(conf), "--create-from", str(image),
                  "--switch", "external")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hyperv-smoke: every check passed" in proc.stdout
    for step in ("StopInstance: SUCCESS", "StartRescueVM: SUCCESS",
                 "AttachRootDiskToInstance: SUCCESS", "os-win create_vm("):
        assert step in proc.stdout
    assert SimulatedHost(sim.state_file).view() == before, "the throwaway VM was left"


def test_smoke_script_reports_a_failed_rescue_and_still_cleans_up(sim_conf) -> None:
    conf, sim = sim_conf
    before = sim.view()
    # attach_drive: 1 the throwaway's root disk, 2 the rescue disk, 3 the root
    # disk onto the rescue VM, which fails.
    sim.set_fault("attach_drive", "permanent", after=2, times=1)
    image = sim.view()["images"][IMAGE]["path"]
    proc = _smoke("--simulated", "--config-file", str(conf), "--create-from", image)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "check: rescue succeeded: FAILED" in proc.stdout
    assert "check: the instance's configuration is as before: ok" in proc.stdout
    assert json.loads(SimulatedHost(sim.state_file).view_json()) == before


def test_smoke_script_refuses_an_image_outside_the_cache(sim_conf, tmp_path: Path) -> None:
    conf, _ = sim_conf
    proc = _smoke("--simulated", "--config-file", str(conf), "--create-from",
                  str(tmp_path / "elsewhere" / f"{IMAGE}.vhdx"))
    assert proc.returncode == 2
    assert "must be a cached image" in proc.stdout


def test_systemd_and_winsw_give_the_worker_the_same_time_to_stop(unit, winsw) -> None:
    systemd = _seconds(_one(unit, "Service", "TimeoutStopSec"))
    windows = _seconds(_text(winsw, "stoptimeout"))
    assert systemd == windows
