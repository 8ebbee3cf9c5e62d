"""The Hyper-V adapter against autospecs of os-win's real utility classes.

An autospec fails on any call whose name or arguments os-win's class would
reject, so these tests also pin the adapter to os-win's real signatures.
"""

from __future__ import annotations

import warnings
from unittest import mock

import pytest

from rescue_flow import exceptions, records
from rescue_flow.hyperv.calls import OsWinCaller, RetryPolicy
from rescue_flow.hyperv.host import GEN1_DISK_FIRST, HyperVHost
from rescue_flow.hyperv.reader import RESCUE_VM_MARKER, rescue_vm_notes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from os_win import constants
    from os_win import exceptions as os_exc
    from os_win.utils.compute.vmutils import VMUtils
    from os_win.utils.network.networkutils import NetworkUtils
    from os_win.utils.pathutils import PathUtils
    from os_win.utils.storage.virtdisk.vhdutils import VHDUtils

def _wmi_job_failed():
    return os_exc.WMIJobFailed(job_state=10, error_code=32768, error_summ_desc="busy",
                               error_desc="busy")


UUID = "5b5a7b4e-3c0c-4d55-9a4c-2f0f3b1e9d01"
ROOT = "/inst/instance-00000001/root.vhdx"
CONFIG_DRIVE = "/inst/instance-00000001/configdrive.iso"


@pytest.fixture
def utils():
    return {
        "vmutils": mock.create_autospec(VMUtils, instance=True),
        "vhdutils": mock.create_autospec(VHDUtils, instance=True),
        "pathutils": mock.create_autospec(PathUtils, instance=True),
        "netutils": mock.create_autospec(NetworkUtils, instance=True),
    }


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def host(utils, sleeps):
    clock = iter(range(0, 10_000))
    policy = RetryPolicy(attempts=4, attempts_for_oswin_retried=2, initial_backoff=1,
                         max_backoff=4, sleep=sleeps.append)
    return HyperVHost(utils, OsWinCaller(policy), instances_path="/inst",
                      vswitch_names=["external", "internal"], soft_shutdown_timeout=3,
                      poll_interval=1, sleep=sleeps.append, clock=lambda: next(clock))


def _gen2_instance(vm):
    vm.list_instance_notes.return_value = [("instance-00000001", [UUID])]
    vm.get_vm_generation.return_value = constants.VM_GEN_2
    vm.get_vm_memory_info.return_value = {"Limit": 2048, "Reservation": 2048}
    vm.get_vm_summary_info.return_value = {
        "NumberOfProcessors": 2, "EnabledState": constants.HYPERV_VM_STATE_ENABLED}
    vm.get_vm_storage_paths.return_value = ([CONFIG_DRIVE, ROOT], [])
    slots = {ROOT: 0, CONFIG_DRIVE: 1}
    vm.get_disk_attachment_info.side_effect = lambda path, is_physical: {
        "controller_type": constants.CTRL_TYPE_SCSI, "controller_addr": 0,
        "controller_slot": slots[path], "controller_path": "scsi0"}
    vm.get_vm_nic_names.return_value = ["nic-b", "nic-a"]


def test_read_vm_config_records_disks_nics_and_root_first_boot_order(host, utils):
    _gen2_instance(utils["vmutils"])
    utils["netutils"].get_vnic_mac_address.side_effect = {
        "nic-a": "FA163E000001", "nic-b": "FA163E000002"}.get
    utils["netutils"].get_port_by_id.side_effect = (
        lambda nic, switch: {"port": nic} if (nic, switch) in
        {("nic-a", "external"), ("nic-b", "internal")} else None)

    config = host.read_vm_config("instance-00000001")

    assert config.instance_uuid == UUID
    assert (config.generation, config.memory_mb, config.vcpus) == (2, 2048, 2)
    assert config.power_state == records.POWER_RUNNING
    assert config.disks == (
        records.DiskAttachment(ROOT, "SCSI", 0, 0, records.DRIVE_DISK),
        records.DiskAttachment(CONFIG_DRIVE, "SCSI", 0, 1, records.DRIVE_DVD))
    assert config.nics == (records.Nic("nic-a", "FA:16:3E:00:00:01", "external"),
                           records.Nic("nic-b", "FA:16:3E:00:00:02", "internal"))
    assert config.boot_order == (ROOT,)
    assert config.instance_dir == "/inst/instance-00000001"
    assert config.root_disk.path == ROOT


def test_read_vm_config_marks_passthrough_volumes(host, utils):
    vm = utils["vmutils"]
    _gen2_instance(vm)
    vm.get_vm_storage_paths.return_value = ([], ["\\\\?\\PhysicalDrive3"])
    vm.get_disk_attachment_info.side_effect = None
    vm.get_disk_attachment_info.return_value = {
        "controller_type": "SCSI", "controller_addr": 0, "controller_slot": 0,
        "controller_path": "scsi0"}
    vm.get_vm_nic_names.return_value = []

    config = host.read_vm_config("instance-00000001")

    assert [d.drive_type for d in config.disks] == [records.DRIVE_VOLUME]
    vm.get_disk_attachment_info.assert_called_once_with(
        "\\\\?\\PhysicalDrive3", is_physical=True)
    with pytest.raises(LookupError):
        config.root_disk  # noqa: B018


def test_find_instance_vm_ignores_rescue_vms_and_other_instances(host, utils):
    record = records.VMConfig("instance-00000001", UUID, 1, 512, 1, "running", (), (),
                              (), "/inst/instance-00000001")
    utils["vmutils"].list_instance_notes.return_value = [
        ("instance-00000001-rescue", rescue_vm_notes(UUID, record, "req-1")),
        ("instance-00000002", ["0f0e0d0c-0000-4000-8000-000000000000"]),
        ("instance-00000001", [UUID]),
    ]

    assert host.find_instance_vm(UUID) == "instance-00000001"
    rescue = host.find_rescue_vm(UUID)
    assert rescue is not None
    assert (rescue.name, rescue.record, rescue.request_id) == (
        "instance-00000001-rescue", record, "req-1")
    assert rescue_vm_notes(UUID, record, "req-1")[0] == RESCUE_VM_MARKER


def test_stop_vm_does_nothing_to_a_vm_that_is_off(host, utils):
    utils["vmutils"].get_vm_state.return_value = constants.HYPERV_VM_STATE_DISABLED

    assert host.stop_vm("vm") == "already-off"
    utils["vmutils"].soft_shutdown_vm.assert_not_called()
    utils["vmutils"].set_vm_state.assert_not_called()


def test_stop_vm_waits_for_a_clean_shutdown(host, utils):
    utils["vmutils"].get_vm_state.side_effect = [
        constants.HYPERV_VM_STATE_ENABLED, constants.HYPERV_VM_STATE_ENABLED,
        constants.HYPERV_VM_STATE_DISABLED]

    assert host.stop_vm("vm") == "soft"
    utils["vmutils"].soft_shutdown_vm.assert_called_once_with("vm")
    utils["vmutils"].set_vm_state.assert_not_called()


def test_stop_vm_powers_off_hard_when_the_guest_ignores_the_shutdown(host, utils, sleeps):
    utils["vmutils"].get_vm_state.return_value = constants.HYPERV_VM_STATE_ENABLED

    assert host.stop_vm("vm") == "hard"
    utils["vmutils"].set_vm_state.assert_called_once_with(
        "vm", constants.HYPERV_VM_STATE_DISABLED)
    assert sleeps and all(s == 1 for s in sleeps)


def test_stop_vm_powers_off_hard_when_soft_shutdown_is_refused(host, utils):
    vm = utils["vmutils"]
    vm.get_vm_state.return_value = constants.HYPERV_VM_STATE_ENABLED
    vm.soft_shutdown_vm.side_effect = os_exc.HyperVException("guest is booting")

    assert host.stop_vm("vm") == "hard"
    vm.set_vm_state.assert_called_once_with("vm", constants.HYPERV_VM_STATE_DISABLED)


def test_stop_vm_trusts_a_power_state_its_caller_just_read(host, utils):
    vm = utils["vmutils"]
    vm.get_vm_state.return_value = constants.HYPERV_VM_STATE_DISABLED

    assert host.stop_vm("vm", known_state=records.POWER_RUNNING) == "soft"
    assert host.stop_vm("vm", known_state=records.POWER_OFF) == "already-off"

    vm.soft_shutdown_vm.assert_called_once_with("vm")
    assert vm.get_vm_state.call_count == 1  # the poll after the shutdown, no look before


def test_stop_vm_with_a_stale_known_state_still_ends_with_the_vm_off(host, utils):
    # A resumed step: the flow recorded "running", the VM is off already and
    # a guest that is off refuses the shutdown.
    vm = utils["vmutils"]
    vm.get_vm_state.return_value = constants.HYPERV_VM_STATE_DISABLED
    vm.soft_shutdown_vm.side_effect = os_exc.HyperVException("no integration services")

    assert host.stop_vm("vm", known_state=records.POWER_RUNNING) == "hard"
    vm.set_vm_state.assert_called_once_with("vm", constants.HYPERV_VM_STATE_DISABLED)


def test_transient_errors_are_retried_with_backoff_then_succeed(host, utils, sleeps):
    utils["vmutils"].create_vm.side_effect = [
        _wmi_job_failed(), os_exc.x_wmi("busy"), None]
    utils["vmutils"].vm_exists.return_value = False

    host.create_vm("vm-rescue", 1, 512, 1, "/inst/vm", ["note"])

    assert utils["vmutils"].create_vm.call_count == 3
    assert sleeps == [1, 2]


def test_a_vm_made_by_a_call_whose_answer_was_lost_is_not_made_again(host, utils, sleeps):
    # The job ran, then WMI's connection dropped: Hyper-V would make a
    # second VM of the same name if create_vm were simply called again.
    vm = utils["vmutils"]
    vm.create_vm.side_effect = _wmi_job_failed()
    vm.vm_exists.side_effect = [False, True]

    host.create_vm("vm-rescue", 1, 512, 1, "/inst/vm", ["note"])

    vm.create_vm.assert_called_once()
    vm.create_scsi_controller.assert_called_once_with("vm-rescue")
    assert sleeps == [1]


@pytest.mark.parametrize(("names_after_failure", "calls"), [
    (["nic-a-rescue"], 1),  # the answer was lost: the NIC is there
    ([], 2),                # the call failed: make it again
])
def test_a_nic_is_made_again_only_when_the_failed_call_did_not_make_it(
        host, utils, names_after_failure, calls):
    vm = utils["vmutils"]
    vm.get_vm_nic_names.side_effect = [[], names_after_failure]
    vm.create_nic.side_effect = [_wmi_job_failed(), None]

    host.add_nic("vm-rescue", records.Nic("nic-a-rescue", "FA:16:3E:00:00:01", None))

    assert vm.create_nic.call_count == calls


def test_a_vm_destroyed_by_a_call_whose_answer_was_lost_is_not_destroyed_again(
        host, utils):
    # Calling destroy_vm again would fail (the VM is gone) and fail the revert.
    vm = utils["vmutils"]
    vm.vm_exists.side_effect = [True, False]
    vm.destroy_vm.side_effect = _wmi_job_failed()

    host.destroy_vm("vm-rescue")

    vm.destroy_vm.assert_called_once()


def test_a_change_looked_for_before_each_retry_gets_the_tries_it_had(host, utils):
    # create_nic: os-win retries it itself, so it gets the fewer tries
    # (attempts_for_oswin_retried = 2 here), looked for before the second.
    vm = utils["vmutils"]
    vm.get_vm_nic_names.return_value = []
    vm.create_nic.side_effect = _wmi_job_failed()

    with pytest.raises(exceptions.TransientHyperVError):
        host.add_nic("vm-rescue", records.Nic("nic-a-rescue", "FA:16:3E:00:00:01", None))

    assert vm.create_nic.call_count == 2
    assert vm.get_vm_nic_names.call_count == 2


def test_irreversible_steps_do_not_retry_what_the_call_retried_already(host, utils):
    # [retry] attempts = 4: a transient error reaching until_done had its 4
    # tries; trying the step 4 times again would make 16 calls.
    action = mock.Mock(side_effect=exceptions.TransientHyperVError("remove", "busy"))

    with pytest.raises(exceptions.TransientHyperVError):
        host.until_done(action)

    assert action.call_count == 1


def test_irreversible_steps_retry_other_errors_until_they_hold(host, utils):
    action = mock.Mock(side_effect=[exceptions.PermanentHyperVError("remove", "denied"),
                                    None])

    host.until_done(action)

    assert action.call_count == 2


def test_calls_os_win_already_retries_get_fewer_attempts(host, utils):
    utils["vmutils"].set_vm_state.side_effect = _wmi_job_failed()

    with pytest.raises(exceptions.TransientHyperVError):
        host.start_vm("vm")
    assert utils["vmutils"].set_vm_state.call_count == 2


def test_permanent_errors_fail_at_once(host, utils):
    utils["vmutils"].destroy_vm.side_effect = os_exc.HyperVException("access denied")
    utils["vmutils"].vm_exists.return_value = True

    with pytest.raises(exceptions.PermanentHyperVError, match="destroy_vm failed"):
        host.destroy_vm("vm")
    assert utils["vmutils"].destroy_vm.call_count == 1


def test_not_found_errors_become_object_not_found(host, utils):
    utils["vmutils"].get_vm_state.side_effect = os_exc.HyperVVMNotFoundException(
        vm_name="gone")

    with pytest.raises(exceptions.HyperVObjectNotFound):
        host.power_state("gone")


def test_a_file_in_use_is_transient(host, utils):
    utils["pathutils"].exists.return_value = True
    utils["pathutils"].remove.side_effect = [
        os_exc.Win32Exception(func_name="DeleteFile", error_code=32, error_message="in use"),
        None]

    host.delete_file("/inst/vm/root-rescue.vhdx")
    assert utils["pathutils"].remove.call_count == 2


def test_attach_disk_uses_the_recorded_controller_and_slot(host, utils):
    vm = utils["vmutils"]
    vm.get_vm_storage_paths.return_value = ([], [])
    vm.get_vm_ide_controller.return_value = "ide1"

    host.attach_disk("vm", records.DiskAttachment("/inst/vm/root.vhd", "IDE", 1, 1))

    vm.get_vm_ide_controller.assert_called_once_with("vm", 1)
    vm.attach_drive.assert_called_once_with("vm", "/inst/vm/root.vhd", "ide1", 1,
                                            drive_type=constants.DISK)


def test_attach_disk_refused_because_the_disk_is_already_there_is_done(host, utils):
    utils["vmutils"].attach_drive.side_effect = os_exc.WMIJobFailed(
        job_state=10, error_code=32773, error_summ_desc="in use", error_desc="")
    utils["vmutils"].get_vm_storage_paths.return_value = (["/INST/VM/ROOT.VHD"], [])

    host.attach_disk("vm", records.DiskAttachment("/inst/vm/root.vhd", "IDE", 0, 0))

    utils["vmutils"].attach_drive.assert_called_once()


def test_attach_disk_refused_for_another_reason_fails(host, utils):
    utils["vmutils"].attach_drive.side_effect = os_exc.WMIJobFailed(
        job_state=10, error_code=32773, error_summ_desc="slot in use", error_desc="")
    utils["vmutils"].get_vm_storage_paths.return_value = (["/inst/vm/other.vhd"], [])

    with pytest.raises(exceptions.PermanentHyperVError):
        host.attach_disk("vm", records.DiskAttachment("/inst/vm/root.vhd", "IDE", 0, 0))


def test_attach_disk_reads_the_vms_storage_only_when_the_attach_is_refused(host, utils):
    host.attach_disk("vm", records.DiskAttachment("/inst/vm/root.vhd", "IDE", 0, 0))

    utils["vmutils"].get_vm_storage_paths.assert_not_called()


def test_detach_disk_leaves_a_disk_that_another_vm_holds(host, utils):
    # os-win's detach_vm_disk ignores its vm_name and detaches from any VM.
    utils["vmutils"].get_vm_storage_paths.return_value = (["/inst/vm/other.vhdx"], [])

    host.detach_disk("vm", "/inst/vm/root.vhdx")

    utils["vmutils"].detach_vm_disk.assert_not_called()


def test_detach_disk_detaches_from_its_vm(host, utils):
    utils["vmutils"].get_vm_storage_paths.return_value = (["/inst/vm/root.vhdx"], [])

    host.detach_disk("vm", "/inst/vm/root.vhdx")

    utils["vmutils"].detach_vm_disk.assert_called_once_with(
        "vm", "/inst/vm/root.vhdx", is_physical=False)


def test_detach_held_disk_detaches_without_looking_at_the_owner(host, utils):
    host.detach_held_disk("vm", "/inst/vm/root.vhdx")

    utils["vmutils"].get_vm_storage_paths.assert_not_called()
    utils["vmutils"].detach_vm_disk.assert_called_once_with(
        "vm", "/inst/vm/root.vhdx", is_physical=False)


def test_attach_disk_looks_the_controller_up_once_and_hands_it_back(host, utils):
    vm = utils["vmutils"]
    vm.get_vm_scsi_controller.return_value = "scsi0"
    root = records.DiskAttachment("/inst/vm/root.vhdx", "SCSI", 0, 1)

    used = host.attach_disk("vm-rescue", records.DiskAttachment("/inst/r.vhdx", "SCSI", 0, 0))
    host.attach_disk("vm-rescue", root, controller=used)

    assert used == "scsi0"
    vm.get_vm_scsi_controller.assert_called_once_with("vm-rescue")
    vm.get_free_controller_slot.assert_not_called()
    vm.attach_drive.assert_called_with("vm-rescue", "/inst/vm/root.vhdx", "scsi0", 1,
                                       drive_type=constants.DISK)


def test_create_vm_completes_a_half_created_vm(host, utils):
    vm = utils["vmutils"]
    vm.vm_exists.return_value = True
    vm.get_vm_scsi_controller.return_value = None

    host.create_vm("vm-rescue", 2, 1024, 2, "/inst/vm", ["n"])

    vm.create_vm.assert_not_called()
    vm.update_vm.assert_called_once_with("vm-rescue", 1024, 0, 2, 0, False, 1.0)
    vm.create_scsi_controller.assert_called_once_with("vm-rescue")


def _file_exists_error() -> Exception:
    return os_exc.VHDWin32APIException("CreateVirtualDisk failed. Error code: 80",
                                       error_code=80)


def test_create_differencing_disk_accepts_its_own_earlier_result(host, utils):
    utils["vhdutils"].create_differencing_vhd.side_effect = _file_exists_error()
    utils["pathutils"].exists.return_value = True
    utils["vhdutils"].get_vhd_info.return_value = {"ParentPath": "/inst/_base/img.vhdx"}

    host.create_differencing_disk("/inst/vm/root-rescue.vhdx", "/inst/_base/img.vhdx")

    utils["vhdutils"].create_differencing_vhd.assert_called_once()


def test_create_differencing_disk_looks_at_the_file_only_when_refused(host, utils):
    host.create_differencing_disk("/inst/vm/root-rescue.vhdx", "/inst/_base/img.vhdx")

    utils["pathutils"].exists.assert_not_called()


def test_create_differencing_disk_refuses_a_file_with_another_parent(host, utils):
    utils["vhdutils"].create_differencing_vhd.side_effect = _file_exists_error()
    utils["pathutils"].exists.return_value = True
    utils["vhdutils"].get_vhd_info.return_value = {"ParentPath": "/inst/_base/other.vhdx"}

    with pytest.raises(exceptions.PermanentHyperVError, match=r"other\.vhdx"):
        host.create_differencing_disk("/inst/vm/root-rescue.vhdx", "/inst/_base/img.vhdx")


def test_boot_from_disk_sets_hard_disk_first_on_gen1_and_the_disk_on_gen2(host, utils):
    host.boot_from_disk("vm1", 1, "/inst/vm1/root-rescue.vhd")
    host.boot_from_disk("vm2", 2, "/inst/vm2/root-rescue.vhdx")

    assert utils["vmutils"].set_boot_order.call_args_list == [
        mock.call("vm1", list(GEN1_DISK_FIRST)),
        mock.call("vm2", ["/inst/vm2/root-rescue.vhdx"])]


def test_add_nic_creates_once_and_connects_to_the_recorded_switch(host, utils):
    utils["vmutils"].get_vm_nic_names.return_value = []

    host.add_nic("vm-rescue", records.Nic("p1-rescue", "FA:16:3E:00:00:01", "external"))

    utils["vmutils"].create_nic.assert_called_once_with(
        "vm-rescue", "p1-rescue", "FA:16:3E:00:00:01")
    utils["netutils"].connect_vnic_to_vswitch.assert_called_once_with(
        "external", "p1-rescue")


def test_remove_nic_of_a_vm_that_is_gone_does_nothing(host, utils):
    utils["vmutils"].vm_exists.return_value = False

    host.remove_nic("vm-rescue", "p1-rescue")

    utils["vmutils"].destroy_nic.assert_not_called()


def test_a_listed_switch_the_host_lacks_is_skipped_not_fatal(host, utils):
    _gen2_instance(utils["vmutils"])
    utils["vmutils"].get_vm_nic_names.return_value = ["nic-a"]
    utils["netutils"].get_vnic_mac_address.return_value = "FA163E000001"
    utils["netutils"].get_port_by_id.side_effect = [
        os_exc.HyperVvSwitchNotFound(vswitch_name="external"), {"port": "nic-a"}]
    utils["netutils"].get_vswitch_id.side_effect = os_exc.HyperVvSwitchNotFound(
        vswitch_name="external")

    config = host.read_vm_config("instance-00000001")

    assert config.nics == (records.Nic("nic-a", "FA:16:3E:00:00:01", "internal"),)


def test_a_switch_that_exists_but_fails_its_port_lookup_fails_the_read(host, utils):
    # Skipping it would give the rescue VM an unconnected NIC.
    _gen2_instance(utils["vmutils"])
    utils["vmutils"].get_vm_nic_names.return_value = ["nic-a"]
    utils["netutils"].get_vnic_mac_address.return_value = "FA163E000001"
    utils["netutils"].get_port_by_id.side_effect = os_exc.HyperVvSwitchNotFound(
        vswitch_name="external")
    utils["netutils"].get_vswitch_id.return_value = "switch-id"

    with pytest.raises(exceptions.HyperVObjectNotFound):
        host.read_vm_config("instance-00000001")


@pytest.mark.parametrize(("path", "drive_type"), [
    ("C:\\OpenStack\\Instances\\vm\\configdrive.ISO", records.DRIVE_DVD),
    ("C:\\OpenStack\\Instances\\vm\\configdrive.vhd", records.DRIVE_DISK),
    ("C:\\OpenStack\\Instances\\vm\\root.vhdx", records.DRIVE_DISK),
    ("/inst/vm/seed.iso", records.DRIVE_DVD),
])
def test_a_drive_type_is_told_by_the_extension_as_hyper_v_allows(path, drive_type):
    # Hyper-V takes only ISO files in a DVD drive and only VHD(X) in a hard
    # drive, so the record needs no get_vm_dvd_disk_paths query.
    assert records.drive_type_of(path) == drive_type
