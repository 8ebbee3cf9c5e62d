"""The refusals a real Windows host makes and a naive one would not."""

from __future__ import annotations

import ntpath

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants, exceptions

UUID1 = "11111111-2222-4333-8444-555555555555"
UUID2 = "21111111-2222-4333-8444-555555555555"
INSTANCES = r"C:\OpenStack\Instances"


@pytest.fixture
def host(tmp_path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), INSTANCES)
    host.add_image("gen1", 1, "vhd")
    host.add_image("gen2", 2, "vhdx")
    return host


def _root(host, vm):
    return host.vmutils.get_vm_storage_paths(vm)[0][0]


def _disk(host, name, image="gen2"):
    path = ntpath.join(INSTANCES, name)
    host.vhdutils.create_differencing_vhd(path, host.view()["images"][image]["path"])
    return path


def test_a_disk_of_a_running_vm_cannot_be_removed_or_renamed(host):
    host.add_vm("vm1", UUID1, "gen2")
    root = _root(host, "vm1")
    with pytest.raises(PermissionError) as removing:
        host.pathutils.remove(root)
    assert removing.value.winerror == 32
    with pytest.raises(PermissionError) as renaming:
        host.pathutils.rename(root, root + ".old")
    assert renaming.value.winerror == 32
    with pytest.raises(PermissionError):
        host.pathutils.rmtree(ntpath.dirname(root))
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_DISABLED)
    host.pathutils.rename(root, root + ".old")  # off: nothing holds it


def test_the_parent_of_a_running_vms_disk_is_held_open_too(host):
    host.add_vm("vm1", UUID1, "gen2")
    image = host.view()["images"]["gen2"]["path"]
    with pytest.raises(PermissionError) as info:
        host.pathutils.remove(image)
    assert info.value.winerror == 32


def test_ide_drives_are_added_and_removed_only_with_the_vm_off(host):
    host.add_vm("vm1", UUID1, "gen1", stopped=True)
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_ENABLED)
    disk = _disk(host, "extra.vhd", "gen1")
    with pytest.raises(exceptions.HyperVException, match="IDE"):
        host.vmutils.attach_ide_drive("vm1", disk, 1, 0)
    with pytest.raises(exceptions.HyperVException, match="IDE"):
        host.vmutils.detach_vm_disk("vm1", _root(host, "vm1"), is_physical=False)


def test_a_scsi_disk_is_hot_added_to_an_existing_controller_of_a_running_vm(host):
    host.add_vm("vm1", UUID1, "gen2")
    disk = _disk(host, "extra.vhdx")
    host.vmutils.attach_scsi_drive("vm1", disk)
    assert disk in host.vmutils.get_vm_storage_paths("vm1")[0]
    host.vmutils.detach_vm_disk("vm1", disk, is_physical=False)


def test_controllers_and_vcpus_change_only_with_the_vm_off(host):
    host.add_vm("vm1", UUID1, "gen2", vcpus=2)
    with pytest.raises(exceptions.HyperVException, match="controllers"):
        host.vmutils.create_scsi_controller("vm1")
    with pytest.raises(exceptions.HyperVException, match="vCPU"):
        host.vmutils.update_vm("vm1", 1024, 0, 4, 0, False, 1.0)
    host.vmutils.update_vm("vm1", 2048, 0, 2, 0, False, 1.0)  # same vCPUs: fine


def test_vm_nic_and_switch_names_compare_ignoring_case(host):
    host.add_vm("instance-0000000A", UUID1, "gen2", nics=1)
    vm = host.vmutils
    assert vm.vm_exists("INSTANCE-0000000a")
    assert vm.get_vm_generation("instance-0000000a") == 2
    with pytest.raises(exceptions.HyperVException):
        vm.create_vm("INSTANCE-0000000A", False, 2, INSTANCES)
    nic = vm.get_vm_nic_names("instance-0000000a")[0]
    assert host.netutils.get_vnic_mac_address(nic.upper())
    assert host.netutils.get_port_by_id(nic.upper(), "EXTERNAL") is not None
    assert host.netutils.get_vswitch_id("External")
    vm.destroy_nic("instance-0000000a", nic.upper())
    assert vm.get_vm_nic_names("instance-0000000A") == []
    vm.set_vm_state("instance-0000000a", constants.HYPERV_VM_STATE_DISABLED)
    vm.destroy_vm("Instance-0000000A")
    assert not vm.vm_exists("instance-0000000A")
