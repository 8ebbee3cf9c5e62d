"""Seeding builds what Nova's Hyper-V driver builds; the view is canonical."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants

UUID1 = "11111111-2222-4333-8444-555555555555"
UUID2 = "21111111-2222-4333-8444-555555555555"
INSTANCES = "/sim/instances"  # simulated paths need not exist on this machine
MAC = re.compile(r"^FA:16:3E(:[0-9A-F]{2}){3}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), INSTANCES)
    host.add_image("gen1", 1, "vhdx")
    host.add_image("gen1vhd", 1, "vhd")
    host.add_image("gen2", 2, "vhdx")
    return host


def _seed_everything(host: SimulatedHost) -> None:
    host.add_image("gen1", 1, "vhdx")
    host.add_image("gen2", 2, "vhdx")
    host.add_vm("instance-00000001", UUID1, "gen1", nics=2, config_drive=True)
    host.add_vm("instance-00000002", UUID2, "gen2", nics=1, boot_from_volume=True,
                stopped=True, memory_mb=4096, vcpus=2)


def test_add_image_puts_the_image_in_the_base_folder(host):
    path = host.add_image("cirros", 2, "VHDX")
    assert path == os.path.join(INSTANCES, "_base", "cirros.vhdx")
    assert host.view()["images"]["cirros"] == {"generation": 2, "format": "VHDX",
                                               "path": path}
    assert host.pathutils.exists(path)


@pytest.mark.parametrize(("args", "message"), [
    (("gen1", 1, "vhdx"), "already in the image cache"),
    (("x", 2, "vhd"), "cannot boot from a VHD"),
    (("x", 3, "vhdx"), "generation must be 1 or 2"),
    (("x", 1, "qcow2"), "format must be"),
    (("../x", 1, "vhdx"), "invalid image id"),
])
def test_add_image_refuses_bad_input_with_a_value_error(host, args, message):
    with pytest.raises(ValueError, match=message):
        host.add_image(*args)


def test_a_seeded_gen1_vm_looks_like_novas(host):
    host.add_vm("instance-00000001", UUID1, "gen1", nics=2, config_drive=True,
                memory_mb=2048, vcpus=2)
    folder = os.path.join(INSTANCES, "instance-00000001")
    root = os.path.join(folder, "root.vhdx")
    iso = os.path.join(folder, "configdrive.iso")
    vm = host.view()["vms"]["instance-00000001"]
    assert vm["notes"] == [UUID1]
    assert (vm["generation"], vm["memory_mb"], vm["vcpus"]) == (1, 2048, 2)
    assert vm["power_state"] == "running"
    assert vm["controllers"] == {"IDE 0": {"0": {"path": root, "type": "disk"}},
                                 "IDE 1": {"0": {"path": iso, "type": "dvd"}},
                                 "SCSI 0": {}}
    assert vm["boot_order"] == [constants.BOOT_DEVICE_HARDDISK,
                                constants.BOOT_DEVICE_CDROM,
                                constants.BOOT_DEVICE_NETWORK,
                                constants.BOOT_DEVICE_FLOPPY]
    assert len(vm["nics"]) == 2
    for nic in vm["nics"]:
        assert UUID_RE.match(nic["name"]) and MAC.match(nic["mac"])
        assert nic["switch"] == "external"
    assert host.vhdutils.get_vhd_parent_path(root) == \
        os.path.join(INSTANCES, "_base", "gen1.vhdx")
    assert host.vmutils.get_vm_config_root_dir("instance-00000001") == folder
    assert host.vmutils.get_instance_uuid("instance-00000001") == UUID1


def test_a_seeded_gen2_vm_boots_from_its_root_before_its_nics(host):
    host.add_vm("instance-00000002", UUID2, "gen2", nics=1, config_drive=True)
    folder = os.path.join(INSTANCES, "instance-00000002")
    vm = host.view()["vms"]["instance-00000002"]
    root, iso = os.path.join(folder, "root.vhdx"), os.path.join(folder, "configdrive.iso")
    assert vm["controllers"] == {"SCSI 0": {"0": {"path": root, "type": "disk"},
                                            "1": {"path": iso, "type": "dvd"}}}
    nic = vm["nics"][0]["name"]
    assert vm["boot_order"] == [root, f"network:{nic}", iso]


def test_a_vhd_image_gives_a_vhd_root_and_a_stopped_vm_is_off(host):
    host.add_vm("vm1", UUID1, "gen1vhd", stopped=True)
    assert host.vmutils.get_vm_storage_paths("vm1")[0] == \
        [os.path.join(INSTANCES, "vm1", "root.vhd")]
    assert host.vmutils.get_vm_state("vm1") == constants.HYPERV_VM_STATE_DISABLED


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image_id": "nope"}, "not in the image cache"),
    ({"generation": 2}, "differs from image"),
    ({"uuid": "not-a-uuid"}, "is not a UUID"),
    ({"nics": 9}, "nics must be"),
    ({"soft_shutdown": "maybe"}, "soft_shutdown must be"),
    ({"memory_mb": 0}, "memory_mb"),
])
def test_add_vm_refuses_bad_input_with_a_value_error(host, kwargs, message):
    args = {"name": "vm1", "uuid": UUID1, "image_id": "gen1", **kwargs}
    with pytest.raises(ValueError, match=message):
        host.add_vm(**args)


def test_add_vm_refuses_a_name_or_uuid_already_in_use(host):
    host.add_vm("vm1", UUID1, "gen1")
    with pytest.raises(ValueError, match="already exists"):
        host.add_vm("vm1", UUID2, "gen1")
    with pytest.raises(ValueError, match="already used"):
        host.add_vm("vm2", UUID1, "gen1")


def test_a_refused_seed_leaves_the_host_unchanged(host):
    before = host.view_json()
    with pytest.raises(ValueError):
        host.add_vm("vm1", UUID1, "gen1", generation=2)
    assert host.view_json() == before


def test_seeding_is_not_recorded_as_oswin_calls(host):
    host.add_vm("vm1", UUID1, "gen1")
    assert host.calls() == []


def test_two_hosts_seeded_alike_have_byte_identical_views(tmp_path):
    first = SimulatedHost.init(str(tmp_path / "a.json"), INSTANCES)
    second = SimulatedHost.init(str(tmp_path / "b.json"), INSTANCES)
    _seed_everything(first)
    _seed_everything(second)
    assert first.view_json() == second.view_json()
    # The states differ (VM ids, start times); only the views are identical.
    assert first.saved_state() != second.saved_state()


def test_the_view_holds_no_controller_paths_ids_times_or_faults(host):
    host.add_vm("vm1", UUID1, "gen1")
    host.set_fault("get_vm_state", "permanent", after=5)
    host.set_latency("list_instances", 0.5)
    text = host.view_json()
    assert "sim:" not in text and "started" not in text
    assert "fault" not in text and "latency" not in text
    ctrl = host.vmutils.get_vm_ide_controller("vm1", 0)
    assert ctrl not in text
    assert json.loads(text) == host.view()
    assert text == json.dumps(host.view(), sort_keys=True, indent=2) + "\n"


def test_a_power_cycle_gives_back_the_same_view(host):
    host.add_vm("vm1", UUID1, "gen1")
    before = host.view_json()
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_DISABLED)
    assert host.view_json() != before
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_ENABLED)
    assert host.view_json() == before


def test_init_overwrites_the_previous_host(host, tmp_path):
    host.add_vm("vm1", UUID1, "gen1")
    fresh = SimulatedHost.init(str(tmp_path / "host.json"), INSTANCES, ["sw"])
    assert fresh.view() == {"switches": ["sw"], "vms": {}, "files": {}, "images": {}}
    assert host.view() == fresh.view()  # the old handle sees the new state


def test_opening_a_host_that_was_never_initialised_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="sim init"):
        SimulatedHost(str(tmp_path / "missing.json"))


def test_the_text_view_shows_vms_drives_nics_and_faults(host):
    host.add_vm("vm1", UUID1, "gen1", nics=1)
    host.set_fault("set_vm_state", "transient", times=2)
    text = host.view_text()
    assert "vm1  running  gen 1" in text
    assert "IDE 0:0  disk" in text
    assert "-> external" in text
    assert "boot: HARDDISK, CDROM, NETWORK, FLOPPY" in text
    assert "fault: set_vm_state  transient" in text
