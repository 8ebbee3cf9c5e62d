"""Files another program writes on the host (nova-compute's rescue config drive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants

UUID = "11111111-2222-4333-8444-555555555555"
FOLDER = r"C:\Instances\instance-00000001"
DRIVE = FOLDER + r"\configdrive-rescue.iso"


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.sqlite"), r"C:\Instances")
    host.add_image("gen1", 1, "vhd")
    host.add_vm("instance-00000001", UUID, "gen1", stopped=True)
    host.clear_calls()
    return host


def test_a_written_file_is_on_the_host_with_its_content_and_no_os_win_call(host):
    host.put_file(DRIVE, b"iso bytes")

    assert host.read_file(DRIVE.upper()) == b"iso bytes"  # NTFS ignores case
    assert host.pathutils.exists(DRIVE)
    assert host.view()["files"][DRIVE] == {"format": "ISO", "parent": None}
    assert [call["method"] for call in host.calls()] == ["exists"]


def test_a_written_iso_attaches_as_a_dvd_and_a_vhd_as_a_disk(host):
    host.put_file(DRIVE, b"iso")
    vhd = FOLDER + r"\configdrive-rescue.vhd"
    host.put_file(vhd, b"vhd")
    ide1 = host.vmutils.get_vm_ide_controller("instance-00000001", 1)

    host.vmutils.attach_drive("instance-00000001", DRIVE, ide1, 0, constants.DVD)
    host.vmutils.attach_drive("instance-00000001", vhd, ide1, 1, constants.DISK)

    assert {d["path"]: d["type"] for d in
            host.view()["vms"]["instance-00000001"]["controllers"]["IDE 1"].values()} == {
        DRIVE: "dvd", vhd: "disk"}


def test_a_file_a_running_vm_holds_cannot_be_written_or_deleted(host):
    host.put_file(DRIVE, b"iso")
    ide1 = host.vmutils.get_vm_ide_controller("instance-00000001", 1)
    host.vmutils.attach_drive("instance-00000001", DRIVE, ide1, 0, constants.DVD)
    host.vmutils.set_vm_state("instance-00000001", constants.HYPERV_VM_STATE_ENABLED)

    with pytest.raises(ValueError, match="in use"):
        host.put_file(DRIVE, b"new")
    with pytest.raises(ValueError, match="in use"):
        host.delete_file(DRIVE)
    with pytest.raises(PermissionError):
        host.pathutils.remove(DRIVE)
    assert host.read_file(DRIVE) == b"iso"


def test_deleting_a_written_file_removes_it_and_a_missing_one_is_fine(host):
    before = host.view()
    host.put_file(DRIVE, b"iso")

    host.delete_file(DRIVE)
    host.delete_file(DRIVE)

    assert host.read_file(DRIVE) is None
    assert host.view() == before


@pytest.mark.parametrize("path", [FOLDER + r"\notes.txt", r"C:\Nowhere\configdrive-rescue.iso"])
def test_a_file_of_another_kind_or_in_a_missing_folder_is_refused(host, path):
    with pytest.raises(ValueError):
        host.put_file(path, b"x")


def test_os_win_removal_deletes_the_content_too(host):
    host.put_file(DRIVE, b"iso")

    host.pathutils.remove(DRIVE)

    assert host.read_file(DRIVE) is None
