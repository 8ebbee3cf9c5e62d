"""The rescue config drive: attached to the rescue VM, gone after unrescue or a revert.

The Nova driver writes ``configdrive-rescue.iso|vhd`` into the instance's
folder before it sends the request (here: ``put_file``, as nova-compute's
write); the flow attaches it where compute-hyperv attaches a config drive.
"""

from __future__ import annotations

import json
import ntpath

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID

from rescue_flow.outcome import Outcome

DRIVE = b'{"admin_pass": "s3cret-rescue", "uuid": "%s"}'
CASES = [("instance-00000001", GEN1_UUID, GEN1_IMAGE),
         ("instance-00000002", GEN2_UUID, GEN2_IMAGE)]


def _folder(site, name):
    return site.sim.paths.join(site.sim.instances_path, name)


def put_drive(site, name, uuid, ext="iso"):
    """Write the drive as the Nova driver does; its path and the request field."""
    path = site.sim.paths.join(_folder(site, name), f"configdrive-rescue.{ext}")
    site.sim.put_file(path, DRIVE % uuid.encode())
    return path, {"path": path, "format": "iso9660"}


def _vm(site, name):
    return json.loads(site.view())["vms"].get(name)


def _drives(vm):
    return {f"{ctrl} {slot}": (drive["path"], drive["type"])
            for ctrl, slots in vm["controllers"].items() for slot, drive in slots.items()}


@pytest.mark.parametrize(("name", "uuid", "image"), CASES)
@pytest.mark.parametrize(("ext", "drive_type"), [("iso", "dvd"), ("vhd", "disk")])
def test_the_rescue_vm_gets_the_config_drive_where_compute_hyperv_puts_one(
        seeded, name, uuid, image, ext, drive_type):
    path, field = put_drive(seeded, name, uuid, ext)

    result = seeded.rescue(uuid, image, config_drive=field)

    assert result.outcome is Outcome.SUCCESS, result.reason
    rescue = _drives(_vm(seeded, name + "-rescue"))
    # Gen1: IDE 1:0; Gen2: after the rescue disk (0) and the root disk (1).
    where = "IDE 1 0" if image == GEN1_IMAGE else "SCSI 0 2"
    assert rescue[where] == (path, drive_type)
    assert path not in [p for p, _t in _drives(_vm(seeded, name)).values()]
    assert seeded.sim.read_file(path) == DRIVE % uuid.encode()


@pytest.mark.parametrize(("name", "uuid", "image"), CASES)
def test_unrescue_deletes_the_config_drive_and_leaves_the_host_as_before(
        seeded, name, uuid, image):
    before = seeded.view()
    path, field = put_drive(seeded, name, uuid)
    assert seeded.rescue(uuid, image, config_drive=field).outcome is Outcome.SUCCESS

    result = seeded.unrescue(uuid)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert result.leftovers == []
    assert seeded.sim.read_file(path) is None
    assert seeded.view() == before


@pytest.mark.parametrize(("name", "uuid", "image"), CASES)
def test_a_failed_attach_of_the_config_drive_reverts_and_deletes_the_file(
        seeded, name, uuid, image):
    before = seeded.view()
    path, field = put_drive(seeded, name, uuid)
    # The attach after the root disk's is the config drive's.
    seeded.sim.set_fault("attach_drive", "permanent", after=2, times=1)

    result = seeded.rescue(uuid, image, config_drive=field)

    assert result.outcome is Outcome.FAILED
    assert result.failed_step == "AttachRescueConfigDrive"
    assert seeded.sim.read_file(path) is None
    assert seeded.view() == before


def test_a_rescue_that_fails_after_the_attach_detaches_and_deletes_the_drive(seeded):
    before = seeded.view()
    path, field = put_drive(seeded, "instance-00000002", GEN2_UUID)
    # The soft shutdown stops the instance: the first set_vm_state starts the
    # rescue VM.
    seeded.sim.set_fault("set_vm_state", "permanent", times=1)

    result = seeded.rescue(GEN2_UUID, GEN2_IMAGE, config_drive=field)

    assert result.failed_step == "StartRescueVM"
    assert "AttachRescueConfigDrive" in result.reverted_steps
    assert seeded.sim.read_file(path) is None
    assert seeded.view() == before


@pytest.mark.parametrize("bad", [
    "root.vhd",                    # a file the revert would delete
    "configdrive.iso",             # the instance's own config drive
    "../instance-00000002/configdrive-rescue.iso",  # another instance's folder
    "configdrive-rescue.vhdx",
])
def test_a_config_drive_that_is_not_the_instances_rescue_drive_is_refused_untouched(
        seeded, bad):
    folder = _folder(seeded, "instance-00000001")
    seeded.sim.put_file(seeded.sim.paths.join(folder, "configdrive-rescue.iso"), b"x")
    before = seeded.view()
    field = {"path": seeded.sim.paths.join(folder, bad), "format": "iso9660"}

    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE, config_drive=field)

    assert result.outcome is Outcome.REFUSED
    assert "rescue config drive" in result.reason
    assert seeded.view() == before


def test_a_vfat_drive_named_as_an_iso_is_refused(seeded):
    path, _field = put_drive(seeded, "instance-00000001", GEN1_UUID)

    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE,
                           config_drive={"path": path, "format": "vfat"})

    assert result.outcome is Outcome.REFUSED
    assert "vfat" in result.reason


def test_the_drive_cannot_be_deleted_while_the_rescue_vm_runs(seeded):
    """As on Windows: a running VM holds its drives open (sharing violation)."""
    path, field = put_drive(seeded, "instance-00000001", GEN1_UUID)
    assert seeded.rescue(GEN1_UUID, GEN1_IMAGE, config_drive=field).outcome is \
        Outcome.SUCCESS

    with pytest.raises(PermissionError) as raised:
        seeded.sim.pathutils.remove(path)

    assert raised.value.winerror == 32


def test_a_rescue_without_a_config_drive_attaches_none(seeded):
    assert seeded.rescue(GEN1_UUID, GEN1_IMAGE).outcome is Outcome.SUCCESS

    rescue = _drives(_vm(seeded, "instance-00000001-rescue"))

    assert "IDE 1 0" not in rescue
    assert not [p for p, _t in rescue.values() if "configdrive" in p]


def test_a_drive_left_with_its_rescue_vm_goes_with_the_next_clean_up(seeded):
    before = seeded.view()
    path, field = put_drive(seeded, "instance-00000002", GEN2_UUID)
    assert seeded.rescue(GEN2_UUID, GEN2_IMAGE, config_drive=field).outcome is \
        Outcome.SUCCESS
    seeded.sim.set_fault("destroy_vm", "permanent")  # for good: the VM stays

    first = seeded.unrescue(GEN2_UUID)
    seeded.sim.clear_faults()

    assert first.outcome is Outcome.SUCCESS
    assert any(path in leftover for leftover in first.leftovers), first.leftovers
    assert seeded.sim.read_file(path) is not None
    second = seeded.unrescue(GEN2_UUID)
    assert second.leftovers == []
    assert seeded.sim.read_file(path) is None
    assert seeded.view() == before


@pytest.mark.parametrize("spelled", [str, lambda path: path.upper().replace("\\", "/")],
                         ids=["as_written", "other_case_and_slashes"])
def test_a_rescue_that_cleans_up_a_left_rescue_vm_first_keeps_its_own_new_drive(
        seeded, spelled):
    path, field = put_drive(seeded, "instance-00000002", GEN2_UUID)
    field = {**field, "path": spelled(path)}
    assert seeded.rescue(GEN2_UUID, GEN2_IMAGE, config_drive=field).outcome is \
        Outcome.SUCCESS
    seeded.sim.set_fault("destroy_vm", "permanent")
    assert seeded.unrescue(GEN2_UUID).leftovers  # the rescue VM stays, with its drive
    seeded.sim.clear_faults()
    seeded.sim.put_file(path, b"the next rescue's drive")  # the driver overwrites it

    result = seeded.rescue(GEN2_UUID, GEN2_IMAGE, config_drive=field)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert seeded.sim.read_file(path) == b"the next rescue's drive"
    rescue = _drives(_vm(seeded, "instance-00000002-rescue"))
    attached, kind = rescue["SCSI 0 2"]
    assert (ntpath.normcase(attached), kind) == (ntpath.normcase(path), "dvd")


def test_the_drive_path_is_compared_as_windows_does(seeded):
    """Another case and forward slashes name the same file on Windows."""
    path, _field = put_drive(seeded, "instance-00000001", GEN1_UUID)
    spelled = path.upper().replace("\\", "/")

    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE,
                           config_drive={"path": spelled, "format": "iso9660"})

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert seeded.unrescue(GEN1_UUID).outcome is Outcome.SUCCESS
    assert seeded.sim.read_file(path) is None
