"""rescue_flow.config: options live on private conf objects only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from oslo_config import cfg

from rescue_flow import config

OUR_GROUPS = [group for group, _ in config.list_opts() if group != "DEFAULT"]
OUR_DEFAULT_OPTS = [opt.name for group, opts in config.list_opts()
                    if group == "DEFAULT" for opt in opts]


def _conf_from_file(tmp_path: Path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / "rescue-flow.conf"
    path.write_text(textwrap.dedent(text))
    return config.make_conf(["--config-file", str(path)])


def test_register_opts_on_private_conf() -> None:
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="rescue-flow", default_config_files=[])
    assert conf.hyperv.driver == "oswin"
    assert conf.retry.attempts == 4
    assert conf.host == socket.gethostname()
    # and not on the global one
    for group in OUR_GROUPS:
        assert group not in cfg.CONF


def test_list_opts_covers_every_group_with_help() -> None:
    groups = dict(config.list_opts())
    assert {"DEFAULT", "hyperv", "simulated", "retry"} <= set(groups)
    for group, opts in groups.items():
        for opt in opts:
            assert opt.help, f"[{group}] {opt.name} has no help text"


def test_importing_rescue_flow_registers_nothing_globally() -> None:
    # In a fresh interpreter: import every rescue_flow module, then look at
    # the global cfg.CONF (registrations are process-wide and permanent).
    script = textwrap.dedent("""
        import importlib, json, pkgutil, sys
        import rescue_flow
        failed = {}
        for mod in pkgutil.walk_packages(rescue_flow.__path__, "rescue_flow."):
            try:
                importlib.import_module(mod.name)
            except Exception as exc:
                failed[mod.name] = f"{type(exc).__name__}: {exc}"
        from oslo_config import cfg
        groups = sys.argv[1].split(",")
        names = sys.argv[2].split(",")
        print(json.dumps({
            "imported": sorted(m for m in sys.modules if m.startswith("rescue_flow")),
            "failed": failed,
            "groups": [g for g in groups if g in cfg.CONF],
            "default_opts": [n for n in names if n in cfg.CONF],
        }))
    """)
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, ",".join(OUR_GROUPS),
         ",".join(OUR_DEFAULT_OPTS)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "rescue_flow.config" in found["imported"]
    assert found["failed"] == {}, f"modules that do not import: {found['failed']}"
    assert found["groups"] == [], f"groups registered on cfg.CONF: {found['groups']}"
    assert found["default_opts"] == [], (
        f"[DEFAULT] options registered on cfg.CONF: {found['default_opts']}")


def test_driver_choices_are_enforced(tmp_path: Path) -> None:
    conf = _conf_from_file(tmp_path, """
        [hyperv]
        driver = bogus
    """)
    with pytest.raises(cfg.ConfigFileValueError):
        conf.hyperv.driver  # noqa: B018 - reading the value validates it


def test_driver_choice_override_is_refused() -> None:
    conf = config.make_conf([])
    with pytest.raises(ValueError):
        conf.set_override("driver", "bogus", group="hyperv")


def test_simulated_driver_is_accepted(tmp_path: Path) -> None:
    conf = _conf_from_file(tmp_path, """
        [hyperv]
        driver = simulated
    """)
    assert conf.hyperv.driver == "simulated"


def test_minimum_is_enforced(tmp_path: Path) -> None:
    conf = _conf_from_file(tmp_path, """
        [retry]
        attempts = 0
    """)
    with pytest.raises(cfg.ConfigFileValueError):
        conf.retry.attempts  # noqa: B018


def test_state_file_interpolates_state_path(tmp_path: Path) -> None:
    conf = _conf_from_file(tmp_path, f"""
        [DEFAULT]
        state_path = {tmp_path}/state
    """)
    assert conf.simulated.state_file == f"{tmp_path}/state/simulated-host.sqlite"


def test_state_file_interpolates_overridden_state_path(tmp_path: Path) -> None:
    conf = config.make_conf(overrides={"DEFAULT": {"state_path": str(tmp_path)}})
    assert conf.simulated.state_file == f"{tmp_path}/simulated-host.sqlite"


def test_explicit_state_file_wins(tmp_path: Path) -> None:
    conf = _conf_from_file(tmp_path, f"""
        [DEFAULT]
        state_path = {tmp_path}/state
        [simulated]
        state_file = {tmp_path}/elsewhere.json
    """)
    assert conf.simulated.state_file == f"{tmp_path}/elsewhere.json"


def test_make_conf_reads_no_file_unless_told(tmp_path: Path, monkeypatch) -> None:
    # oslo.config would otherwise search ~/.rescue-flow/, /etc/rescue-flow/ ...
    home = tmp_path / "home"
    (home / ".rescue-flow").mkdir(parents=True)
    (home / ".rescue-flow" / "rescue-flow.conf").write_text("[retry]\nattempts = 9\n")
    monkeypatch.setenv("HOME", str(home))
    assert config.make_conf([]).retry.attempts == 4
