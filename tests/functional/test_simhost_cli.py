"""``rescue-flow sim ...`` through the real entry point and a config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rescue_flow import cli
from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import exceptions

UUID1 = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rescue-flow.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'state'}\n"
                    f"[hyperv]\ninstances_path = /sim/instances\n"
                    f"vswitch_names = external,internal\n")
    return path


def sim(config: Path, *args: str) -> int:
    return cli.main(["--config-file", str(config), "sim", *args])


def state_file(config: Path) -> str:
    return str(config.parent / "state" / "simulated-host.sqlite")


@pytest.fixture
def seeded(config: Path) -> Path:
    assert sim(config, "init") == 0
    assert sim(config, "add-image", "img", "--generation", "2", "--format", "vhdx") == 0
    assert sim(config, "add-vm", "instance-00000001", "--uuid", UUID1, "--image", "img",
               "--nics", "2", "--config-drive", "--memory-mb", "2048", "--vcpus", "2",
               "--soft-shutdown", "hang") == 0
    return config


def test_sim_init_creates_the_state_folder_and_an_empty_host(config, capsys):
    assert sim(config, "init") == 0
    host = SimulatedHost(state_file(config))
    assert host.view() == {"switches": ["external", "internal"], "vms": {},
                           "files": {}, "images": {}}
    assert "simulated host initialised" in capsys.readouterr().out


def test_sim_add_vm_seeds_what_the_api_would(seeded, tmp_path):
    expected = SimulatedHost.init(str(tmp_path / "api.json"), "/sim/instances",
                                  ["external", "internal"])
    expected.add_image("img", 2, "vhdx")
    expected.add_vm("instance-00000001", UUID1, "img", nics=2, config_drive=True,
                    memory_mb=2048, vcpus=2, soft_shutdown="hang")
    assert SimulatedHost(state_file(seeded)).view_json() == expected.view_json()


def test_sim_show_json_prints_the_canonical_view_exactly(seeded, capsys):
    capsys.readouterr()
    assert sim(seeded, "show", "--json") == 0
    assert capsys.readouterr().out == SimulatedHost(state_file(seeded)).view_json()


def test_sim_show_prints_a_tree_for_people(seeded, capsys):
    capsys.readouterr()
    assert sim(seeded, "show") == 0
    out = capsys.readouterr().out
    assert "instance-00000001  running  gen 2  2048 MB  2 vCPU" in out
    assert "SCSI 0:1  dvd" in out


def test_sim_add_vm_with_bad_input_exits_2_with_a_message(seeded, capsys):
    assert sim(seeded, "add-vm", "vm2", "--uuid", "nope", "--image", "img") == 2
    assert "is not a UUID" in capsys.readouterr().err
    assert sim(seeded, "add-vm", "vm2", "--uuid", UUID1, "--image", "missing") == 2


def test_sim_commands_without_a_state_file_exit_5_saying_how_to_create_it(config, capsys):
    assert sim(config, "show") == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rescue-flow sim init" in err


def test_sim_fault_refuses_a_method_the_host_does_not_offer_and_lists_them(seeded,
                                                                           capsys):
    with pytest.raises(SystemExit) as exit_info:
        sim(seeded, "fault", "take_vm_snapshot", "--mode", "permanent")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "take_vm_snapshot" in err and "set_vm_state" in err


def test_sim_fault_arms_a_fault_that_another_host_object_hits(seeded):
    assert sim(seeded, "fault", "set_vm_state", "--mode", "transient",
               "--after", "1", "--times", "1") == 0
    host = SimulatedHost(state_file(seeded))
    host.vmutils.set_vm_state("instance-00000001", 2)
    with pytest.raises(exceptions.WMIJobFailed):
        host.vmutils.set_vm_state("instance-00000001", 3)
    host.vmutils.set_vm_state("instance-00000001", 3)


def test_sim_latency_and_clear_faults(seeded):
    assert sim(seeded, "latency", "get_vm_state", "0.5") == 0
    assert sim(seeded, "fault", "list_instances", "--mode", "permanent") == 0
    host = SimulatedHost(state_file(seeded))
    assert host.armed_faults()["latency"] == {"get_vm_state": 0.5}
    assert sim(seeded, "clear-faults") == 0
    assert host.armed_faults() == {"faults": {}, "latency": {}}
    assert sim(seeded, "latency", "get_vm_state", "-1") == 2


def test_sim_profile_prices_every_call_and_sim_latency_still_overrides(seeded, capsys):
    host = SimulatedHost(state_file(seeded))
    assert sim(seeded, "profile", "wmi", "--scale", "0.001") == 0
    assert "cost profile wmi x 0.001" in capsys.readouterr().out
    assert sim(seeded, "latency", "get_vm_state", "0.002") == 0
    host.clear_calls()
    host.vmutils.get_vm_state("instance-00000001")
    host.vmutils.list_instance_notes()
    costs = [call["cost"] for call in host.calls()]
    assert costs[0] == 0.002 and 0 < costs[1] < 0.001
    assert "cost profile: wmi x 0.001" in host.view_text()
    assert sim(seeded, "profile", "off") == 0
    assert host.cost_profile() is None
    assert sim(seeded, "profile", "/no/such/profile.json") == 2


def test_sim_calls_lists_the_calls_and_clear_calls_empties_the_log(seeded, capsys):
    host = SimulatedHost(state_file(seeded))
    host.vmutils.get_vm_state("instance-00000001")
    capsys.readouterr()
    assert sim(seeded, "calls", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"method": "get_vm_state", "args": {"vm_name": "instance-00000001"}}]
    assert sim(seeded, "calls") == 0
    assert "get_vm_state(vm_name='instance-00000001')" in capsys.readouterr().out
    assert sim(seeded, "clear-calls") == 0
    assert host.calls() == []
