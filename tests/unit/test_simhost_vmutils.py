"""SimVMUtils behaves like os-win's VMUtils on a real Hyper-V host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants, exceptions

UUID1 = "11111111-2222-4333-8444-555555555555"
UUID2 = "21111111-2222-4333-8444-555555555555"
ON, OFF = constants.HYPERV_VM_STATE_ENABLED, constants.HYPERV_VM_STATE_DISABLED
GEN1_SEEDED = (constants.BOOT_DEVICE_HARDDISK, constants.BOOT_DEVICE_CDROM,
               constants.BOOT_DEVICE_NETWORK, constants.BOOT_DEVICE_FLOPPY)


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), str(tmp_path / "instances"))
    host.add_image("gen1", 1, "vhdx")
    host.add_image("gen2", 2, "vhdx")
    return host


def _new_vm(host: SimulatedHost, name: str = "vm1", gen: int = 1) -> str:
    """A bare VM made through os-win calls, with a SCSI controller."""
    path = os.path.join(host.instances_path, name)
    host.vmutils.create_vm(name, False, gen, path, notes=None)
    host.vmutils.create_scsi_controller(name)
    host.pathutils.makedirs(path)
    return path


def _new_disk(host: SimulatedHost, folder: str, name: str = "disk.vhdx") -> str:
    path = os.path.join(folder, name)
    parent = host.view()["images"]["gen1"]["path"]
    host.vhdutils.create_differencing_vhd(path, parent)
    return path


def _root(host: SimulatedHost, vm: str) -> str:
    return host.vmutils.get_vm_storage_paths(vm)[0][0]


# -- lifecycle -------------------------------------------------------------------


def test_create_vm_of_gen1_has_ide_controllers_0_and_1_and_no_scsi(host):
    host.vmutils.create_vm("vm1", False, constants.VM_GEN_1, "/x/vm1")
    assert host.vmutils.get_vm_ide_controller("vm1", 0) is not None
    assert host.vmutils.get_vm_ide_controller("vm1", 1) is not None
    assert host.vmutils.get_vm_ide_controller("vm1", 2) is None
    assert host.vmutils.get_vm_scsi_controller("vm1") is None
    assert host.vmutils.get_vm_state("vm1") == OFF
    assert host.vmutils.get_vm_config_root_dir("vm1") == "/x/vm1"


def test_create_vm_of_gen2_has_no_controller_until_one_is_created(host):
    host.vmutils.create_vm("vm2", False, constants.VM_GEN_2, "/x/vm2")
    assert host.vmutils.get_vm_ide_controller("vm2", 0) is None
    assert host.vmutils.get_vm_scsi_controller("vm2") is None
    host.vmutils.create_scsi_controller("vm2")
    ctrl = host.vmutils.get_vm_scsi_controller("vm2")
    assert ctrl is not None
    assert host.view()["vms"]["vm2"]["controllers"] == {"SCSI 0": {}}
    assert host.vmutils.get_vm_generation("vm2") == constants.VM_GEN_2


def test_create_vm_with_a_name_in_use_is_refused(host):
    host.vmutils.create_vm("vm1", False, 1, "/x")
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.create_vm("vm1", False, 1, "/x")


@pytest.mark.parametrize(("method", "args"), [
    ("get_vm_state", ()), ("get_vm_summary_info", ()), ("get_vm_generation", ()),
    ("get_vm_memory_info", ()), ("get_vm_storage_paths", ()),
    ("get_vm_nic_names", ()), ("soft_shutdown_vm", ()), ("set_vm_state", (ON,)),
    ("update_vm", (1024, None, 2, None, False, 1.0)), ("create_scsi_controller", ()),
    ("get_vm_scsi_controller", ()), ("get_vm_ide_controller", (0,)),
    ("attach_scsi_drive", ("/x.vhdx",)), ("attach_ide_drive", ("/x.vhdx", 0, 0)),
    ("attach_drive", ("/x.vhdx", "sim:c", 0)), ("set_boot_order", ([],)),
    ("create_nic", ("nic", None)), ("destroy_vm", ()),
    ("get_vm_dvd_disk_paths", ()), ("get_instance_uuid", ()),
    ("get_vm_config_root_dir", ()),
    ("attach_volume_to_controller", ("sim:c", 0, "disk")),
])
def test_a_method_taking_a_vm_name_raises_vm_not_found_for_an_unknown_vm(
        host, method, args):
    with pytest.raises(exceptions.HyperVVMNotFoundException):
        getattr(host.vmutils, method)("no-such-vm", *args)


def test_vm_exists_and_list_instances_see_created_vms_only(host):
    assert host.vmutils.vm_exists("vm1") is False
    _new_vm(host, "vm1")
    _new_vm(host, "vm0")
    assert host.vmutils.vm_exists("vm1") is True
    assert host.vmutils.list_instances() == ["vm0", "vm1"]


def test_destroy_vm_keeps_its_disk_files_and_leaves_them_detached(host):
    host.add_vm("vm1", UUID1, "gen1")
    root = _root(host, "vm1")
    host.vmutils.destroy_vm("vm1")
    assert not host.vmutils.vm_exists("vm1")
    assert host.pathutils.exists(root)
    assert not host.vmutils.is_disk_attached(root, is_physical=False)
    _new_vm(host, "vm2")
    host.vmutils.attach_scsi_drive("vm2", root)  # free to attach elsewhere


def test_update_vm_sets_memory_and_vcpus_seen_in_memory_and_summary_info(host):
    _new_vm(host)
    host.vmutils.update_vm("vm1", 2048, None, 4, None, False, 1.0)
    memory = host.vmutils.get_vm_memory_info("vm1")
    assert memory["DynamicMemoryEnabled"] is False
    assert memory["Reservation"] == memory["Limit"] == 2048
    assert {"Weight", "MaxMemoryBlocksPerNumaNode"} <= set(memory)
    assert host.vmutils.get_vm_summary_info("vm1")["NumberOfProcessors"] == 4


def test_summary_info_reports_memory_and_uptime_only_while_running(host):
    host.add_vm("vm1", UUID1, "gen1", memory_mb=768)
    info = host.vmutils.get_vm_summary_info("vm1")
    assert info["EnabledState"] == ON and info["MemoryUsage"] == 768
    assert info["UpTime"] >= 0
    host.vmutils.set_vm_state("vm1", OFF)
    info = host.vmutils.get_vm_summary_info("vm1")
    assert (info["EnabledState"], info["MemoryUsage"], info["UpTime"]) == (OFF, 0, 0)


def test_notes_give_the_instance_uuid_when_the_first_note_is_a_uuid(host):
    host.vmutils.create_vm("vm1", False, 1, "/x", notes=[UUID1, "other"])
    host.vmutils.create_vm("vm2", False, 1, "/x", notes=["not-a-uuid"])
    host.vmutils.create_vm("vm3", False, 1, "/x", notes=None)
    assert host.vmutils.get_instance_uuid("vm1") == UUID1
    assert host.vmutils.get_instance_uuid("vm2") is None
    assert host.vmutils.get_instance_uuid("vm3") is None
    assert host.vmutils.list_instance_notes() == [("vm1", [UUID1, "other"]),
                                                  ("vm2", ["not-a-uuid"])]


# -- power -------------------------------------------------------------------------


def test_set_vm_state_to_the_state_the_vm_is_in_succeeds(host):
    host.add_vm("vm1", UUID1, "gen1")
    host.vmutils.set_vm_state("vm1", ON)
    host.vmutils.set_vm_state("vm1", OFF)
    host.vmutils.set_vm_state("vm1", OFF)
    assert host.vmutils.get_vm_state("vm1") == OFF


def test_set_vm_state_with_a_state_oswin_cannot_map_raises_key_error(host):
    _new_vm(host)
    with pytest.raises(KeyError):
        host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_SHUTTING_DOWN)


def test_starting_a_vm_whose_root_disk_file_is_gone_fails_like_a_failed_job(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    host.pathutils.remove(_root(host, "vm1"))
    with pytest.raises(exceptions.WMIJobFailed):
        host.vmutils.set_vm_state("vm1", ON)
    assert host.vmutils.get_vm_state("vm1") == OFF


def test_starting_a_vm_whose_base_image_is_gone_fails(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    host.pathutils.remove(host.view()["images"]["gen1"]["path"])
    with pytest.raises(exceptions.WMIJobFailed):
        host.vmutils.set_vm_state("vm1", ON)


def test_pause_and_save_are_reported_and_a_start_resumes(host):
    host.add_vm("vm1", UUID1, "gen1")
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_PAUSED)
    assert host.vmutils.get_vm_state("vm1") == constants.HYPERV_VM_STATE_PAUSED
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_SUSPENDED)
    assert host.view()["vms"]["vm1"]["power_state"] == "saved"
    host.vmutils.set_vm_state("vm1", ON)
    assert host.vmutils.get_vm_state("vm1") == ON


def test_soft_shutdown_turns_a_clean_guest_off(host):
    host.add_vm("vm1", UUID1, "gen1", soft_shutdown="clean")
    host.vmutils.soft_shutdown_vm("vm1")
    assert host.vmutils.get_vm_state("vm1") == OFF


def test_soft_shutdown_of_a_hanging_guest_leaves_it_running(host):
    host.add_vm("vm1", UUID1, "gen1", soft_shutdown="hang")
    host.vmutils.soft_shutdown_vm("vm1")
    assert host.vmutils.get_vm_state("vm1") == ON


def test_soft_shutdown_of_a_vm_that_is_off_does_nothing(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    before = host.view_json()
    host.vmutils.soft_shutdown_vm("vm1")
    assert host.view_json() == before


# -- disks -------------------------------------------------------------------------


def test_storage_paths_list_image_files_then_passthrough_volumes(host):
    host.add_vm("vm1", UUID1, "gen1", config_drive=True)
    files, volumes = host.vmutils.get_vm_storage_paths("vm1")
    folder = os.path.join(host.instances_path, "vm1")
    assert files == [os.path.join(folder, "root.vhdx"),
                     os.path.join(folder, "configdrive.iso")]
    assert volumes == []
    assert host.vmutils.get_vm_dvd_disk_paths("vm1") == [files[1]]


def test_a_boot_from_volume_vm_has_a_passthrough_root_and_no_root_file(host):
    host.add_vm("vm1", UUID1, "gen2", boot_from_volume=True)
    files, volumes = host.vmutils.get_vm_storage_paths("vm1")
    assert files == [] and len(volumes) == 1
    info = host.vmutils.get_disk_attachment_info(volumes[0], is_physical=True)
    assert (info["controller_type"], info["controller_slot"]) == ("SCSI", 0)
    assert not host.pathutils.exists(os.path.join(host.instances_path, "vm1",
                                                  "root.vhdx"))


def test_attachment_info_of_a_gen1_root_is_ide_0_slot_0_with_a_string_address(host):
    host.add_vm("vm1", UUID1, "gen1")
    info = host.vmutils.get_disk_attachment_info(_root(host, "vm1"), is_physical=False)
    assert info == {"controller_slot": 0,
                    "controller_path": host.vmutils.get_vm_ide_controller("vm1", 0),
                    "controller_type": constants.CTRL_TYPE_IDE,
                    "controller_addr": "0"}


def test_attachment_info_of_a_gen2_root_is_scsi_controller_index_0_slot_0(host):
    host.add_vm("vm1", UUID1, "gen2", config_drive=True)
    info = host.vmutils.get_disk_attachment_info(_root(host, "vm1"), is_physical=False)
    assert info == {"controller_slot": 0,
                    "controller_path": host.vmutils.get_vm_scsi_controller("vm1"),
                    "controller_type": constants.CTRL_TYPE_SCSI,
                    "controller_addr": 0}
    iso = host.vmutils.get_vm_dvd_disk_paths("vm1")[0]
    assert host.vmutils.get_disk_attachment_info(iso, False)["controller_slot"] == 1


def test_attachment_info_compares_paths_ignoring_case(host):
    host.add_vm("vm1", UUID1, "gen1")
    info = host.vmutils.get_disk_attachment_info(_root(host, "vm1").upper(), False)
    assert info["controller_slot"] == 0


def test_a_disk_file_is_not_found_with_oswins_default_is_physical_true(host):
    host.add_vm("vm1", UUID1, "gen1")
    root = _root(host, "vm1")
    assert host.vmutils.is_disk_attached(root) is False
    with pytest.raises(exceptions.DiskNotFound):
        host.vmutils.get_disk_attachment_info(root)
    host.vmutils.detach_vm_disk("vm1", root)  # silently does nothing
    assert host.vmutils.is_disk_attached(root, is_physical=False) is True


def test_attachment_info_of_a_detached_disk_raises_disk_not_found(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)  # IDE: cold only
    root = _root(host, "vm1")
    host.vmutils.detach_vm_disk("vm1", root, is_physical=False)
    with pytest.raises(exceptions.DiskNotFound):
        host.vmutils.get_disk_attachment_info(root, is_physical=False)


def test_attach_into_an_occupied_slot_is_refused(host):
    folder = _new_vm(host)
    ctrl = host.vmutils.get_vm_scsi_controller("vm1")
    host.vmutils.attach_drive("vm1", _new_disk(host, folder, "a.vhdx"), ctrl, 0)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_drive("vm1", _new_disk(host, folder, "b.vhdx"), ctrl, 0)


def test_attach_of_a_file_that_does_not_exist_is_refused(host):
    folder = _new_vm(host)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_scsi_drive("vm1", os.path.join(folder, "nope.vhdx"))


def test_attach_of_a_disk_attached_to_another_vm_is_refused(host):
    host.add_vm("vm1", UUID1, "gen1")
    _new_vm(host, "vm2")
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_scsi_drive("vm2", _root(host, "vm1"))


def test_attach_to_a_controller_of_another_vm_is_refused(host):
    folder = _new_vm(host, "vm1")
    _new_vm(host, "vm2")
    other = host.vmutils.get_vm_scsi_controller("vm2")
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_drive("vm1", _new_disk(host, folder), other, 0)


def test_attach_of_an_iso_as_a_hard_disk_is_refused(host):
    host.add_vm("vm1", UUID1, "gen1", config_drive=True, stopped=True)
    iso = host.vmutils.get_vm_dvd_disk_paths("vm1")[0]
    host.vmutils.detach_vm_disk("vm1", iso, is_physical=False)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_scsi_drive("vm1", iso, constants.DISK)
    host.vmutils.attach_scsi_drive("vm1", iso, constants.DVD)


def test_attach_ide_drive_on_a_gen2_vm_is_refused_for_want_of_ide(host):
    folder = _new_vm(host, "vm1", gen=2)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_ide_drive("vm1", _new_disk(host, folder), 0, 0)


def test_an_ide_controller_has_two_slots(host):
    folder = _new_vm(host)
    for slot in (0, 1):
        host.vmutils.attach_ide_drive("vm1", _new_disk(host, folder, f"{slot}.vhdx"),
                                      0, slot)
    ctrl = host.vmutils.get_vm_ide_controller("vm1", 0)
    # os-win's free-slot search knows no IDE limit; Hyper-V refuses slot 2.
    assert host.vmutils.get_free_controller_slot(ctrl) == 2
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.attach_drive("vm1", _new_disk(host, folder, "2.vhdx"), ctrl, 2)


def test_attach_scsi_drive_takes_the_first_free_slot(host):
    folder = _new_vm(host)
    ctrl = host.vmutils.get_vm_scsi_controller("vm1")
    host.vmutils.attach_drive("vm1", _new_disk(host, folder, "a.vhdx"), ctrl, 1)
    assert host.vmutils.get_free_controller_slot(ctrl) == 0
    disk = _new_disk(host, folder, "b.vhdx")
    host.vmutils.attach_scsi_drive("vm1", disk)
    assert host.vmutils.get_disk_attachment_info(disk, False)["controller_slot"] == 0
    assert host.vmutils.get_free_controller_slot(ctrl) == 2


def test_detach_ignores_the_vm_name_and_detaches_from_the_vm_holding_the_disk(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    root = _root(host, "vm1")
    host.vmutils.detach_vm_disk("some-other-name", root, is_physical=False)
    assert host.vmutils.get_vm_storage_paths("vm1") == ([], [])


def test_detach_of_a_disk_that_is_not_attached_does_nothing(host):
    host.add_vm("vm1", UUID1, "gen1")
    before = host.view_json()
    host.vmutils.detach_vm_disk("vm1", "/no/such.vhdx", is_physical=False)
    assert host.view_json() == before


def test_a_passthrough_volume_is_found_only_with_is_physical_true(host):
    _new_vm(host, "vm1")
    ctrl = host.vmutils.get_vm_scsi_controller("vm1")
    host.vmutils.attach_volume_to_controller("vm1", ctrl, 3, "disk-7", serial="vol-7")
    assert host.vmutils.is_disk_attached("disk-7") is True
    assert host.vmutils.is_disk_attached("disk-7", is_physical=False) is False
    info = host.vmutils.get_disk_attachment_info(None, True, serial="vol-7")
    assert info["controller_slot"] == 3
    host.vmutils.detach_vm_disk("vm1", "disk-7")
    assert host.vmutils.get_vm_storage_paths("vm1") == ([], [])


# -- boot order ----------------------------------------------------------------------


def test_gen1_boot_order_is_kept_as_given_and_unaffected_by_disk_changes(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    assert host.view()["vms"]["vm1"]["boot_order"] == list(GEN1_SEEDED)
    host.vmutils.detach_vm_disk("vm1", _root(host, "vm1"), is_physical=False)
    assert host.view()["vms"]["vm1"]["boot_order"] == list(GEN1_SEEDED)
    order = (constants.BOOT_DEVICE_CDROM, constants.BOOT_DEVICE_HARDDISK,
             constants.BOOT_DEVICE_NETWORK, constants.BOOT_DEVICE_FLOPPY)
    host.vmutils.set_boot_order("vm1", order)
    assert host.view()["vms"]["vm1"]["boot_order"] == list(order)


def test_gen1_boot_order_must_list_each_boot_device_once(host):
    _new_vm(host)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.set_boot_order("vm1", (constants.BOOT_DEVICE_HARDDISK,) * 4)


def test_gen2_attach_appends_a_boot_entry_and_detach_removes_it(host):
    host.add_vm("vm1", UUID1, "gen2", nics=1)
    root = _root(host, "vm1")
    nic = host.vmutils.get_vm_nic_names("vm1")[0]
    folder = os.path.dirname(root)
    disk = _new_disk(host, folder)
    host.vmutils.attach_scsi_drive("vm1", disk)
    assert host.view()["vms"]["vm1"]["boot_order"] == [root, f"network:{nic}", disk]
    host.vmutils.detach_vm_disk("vm1", root, is_physical=False)
    assert host.view()["vms"]["vm1"]["boot_order"] == [f"network:{nic}", disk]


def test_gen2_set_boot_order_puts_the_given_disks_first_and_keeps_the_rest(host):
    host.add_vm("vm1", UUID1, "gen2", nics=2)
    root = _root(host, "vm1")
    old = host.view()["vms"]["vm1"]["boot_order"]
    disk = _new_disk(host, os.path.dirname(root))
    host.vmutils.attach_scsi_drive("vm1", disk)
    host.vmutils.set_boot_order("vm1", [disk.upper(), None])
    assert host.view()["vms"]["vm1"]["boot_order"] == [disk, *old]


def test_gen2_set_boot_order_refuses_a_disk_that_is_not_this_vms(host):
    host.add_vm("vm1", UUID1, "gen2")
    host.add_vm("vm2", UUID2, "gen2")
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.set_boot_order("vm1", [_root(host, "vm2")])


def test_gen2_nics_add_and_remove_network_boot_entries(host):
    _new_vm(host, "vm1", gen=2)
    host.vmutils.create_nic("vm1", "nic-a", "fa:16:3e:00:00:01")
    assert host.view()["vms"]["vm1"]["boot_order"] == ["network:nic-a"]
    host.vmutils.destroy_nic("vm1", "nic-a")
    assert host.view()["vms"]["vm1"]["boot_order"] == []


# -- NICs -----------------------------------------------------------------------------


def test_create_nic_stores_the_mac_without_colons_in_upper_case(host):
    _new_vm(host)
    host.vmutils.create_nic("vm1", "nic-a", "fa:16:3e:0a:0b:0c")
    assert host.netutils.get_vnic_mac_address("nic-a") == "FA163E0A0B0C"
    assert host.view()["vms"]["vm1"]["nics"] == [
        {"name": "nic-a", "mac": "FA:16:3E:0A:0B:0C", "switch": None}]


def test_create_nic_without_a_mac_gets_a_dynamic_hyperv_mac(host):
    _new_vm(host)
    host.vmutils.create_nic("vm1", "nic-a")
    assert host.netutils.get_vnic_mac_address("nic-a").startswith("00155D")


def test_nic_names_are_unique_on_the_host(host):
    _new_vm(host, "vm1")
    _new_vm(host, "vm2")
    host.vmutils.create_nic("vm1", "nic-a", None)
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.create_nic("vm2", "nic-a", None)


def test_get_vm_nic_names_lists_nics_in_creation_order(host):
    _new_vm(host)
    for name in ("zeta", "alpha"):
        host.vmutils.create_nic("vm1", name)
    assert host.vmutils.get_vm_nic_names("vm1") == ["zeta", "alpha"]


def test_destroy_nic_ignores_a_missing_nic(host):
    _new_vm(host)
    before = host.view_json()
    host.vmutils.destroy_nic("vm1", "no-such-nic")
    assert host.view_json() == before
