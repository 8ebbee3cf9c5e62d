"""SimVHDUtils and SimPathUtils behave like os-win's on a Windows host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants, exceptions


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), str(tmp_path / "instances"))
    host.add_image("img", 1, "vhdx")
    host.add_image("old", 1, "vhd")
    host.pathutils.makedirs(os.path.join(host.instances_path, "vm1"))
    return host


def _image(host: SimulatedHost, image_id: str = "img") -> str:
    return host.view()["images"][image_id]["path"]


def _in_vm(host: SimulatedHost, name: str) -> str:
    return os.path.join(host.instances_path, "vm1", name)


# -- VHDUtils ------------------------------------------------------------------------


def test_create_differencing_vhd_records_the_parent(host):
    child = _in_vm(host, "root.vhdx")
    host.vhdutils.create_differencing_vhd(child, _image(host))
    assert host.vhdutils.get_vhd_parent_path(child) == _image(host)
    assert host.view()["files"][child] == {"format": "VHDX", "parent": _image(host)}


def test_create_differencing_vhd_on_a_missing_parent_raises_vhd_exception(host):
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.create_differencing_vhd(_in_vm(host, "a.vhdx"),
                                              _in_vm(host, "nope.vhdx"))


def test_create_differencing_vhd_over_an_existing_file_raises_vhd_exception(host):
    child = _in_vm(host, "a.vhdx")
    host.vhdutils.create_differencing_vhd(child, _image(host))
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.create_differencing_vhd(child, _image(host))


def test_create_differencing_vhd_of_another_format_than_its_parent_is_refused(host):
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.create_differencing_vhd(_in_vm(host, "a.vhd"), _image(host))


def test_create_differencing_vhd_in_a_missing_folder_is_refused(host):
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.create_differencing_vhd("/nowhere/a.vhdx", _image(host))


def test_get_vhd_format_goes_by_the_extension_like_oswin(host):
    assert host.vhdutils.get_vhd_format("/any/disk.VHD") == constants.DISK_FORMAT_VHD
    assert host.vhdutils.get_vhd_format("/any/disk.vhdx") == constants.DISK_FORMAT_VHDX
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.get_vhd_format("/any/disk")


def test_get_vhd_format_of_an_existing_file_without_extension_reads_its_format(host):
    host.pathutils.rename(_image(host), os.path.join(host.instances_path, "noext"))
    fmt = host.vhdutils.get_vhd_format(os.path.join(host.instances_path, "noext"))
    assert fmt == "VHDX"


def test_get_vhd_info_describes_a_differencing_disk(host):
    child = _in_vm(host, "root.vhdx")
    host.vhdutils.create_differencing_vhd(child, _image(host))
    info = host.vhdutils.get_vhd_info(child)
    assert info["ParentPath"] == _image(host)
    assert info["ParentResolved"] is True
    assert info["DeviceId"] == 3  # VIRTUAL_STORAGE_TYPE_DEVICE_VHDX
    assert info["ProviderSubtype"] == constants.VHD_TYPE_DIFFERENCING
    assert info["VirtualSize"] > 0


def test_get_vhd_info_of_a_base_image_has_no_parent(host):
    info = host.vhdutils.get_vhd_info(_image(host, "old"))
    assert (info["ParentPath"], info["ParentResolved"]) == ("", False)
    assert info["DeviceId"] == 2  # VIRTUAL_STORAGE_TYPE_DEVICE_VHD
    assert host.vhdutils.get_vhd_parent_path(_image(host)) is None


def test_get_vhd_info_returns_only_the_members_asked_for(host):
    assert set(host.vhdutils.get_vhd_info(_image(host), [6])) == {"DeviceId", "VendorId"}


def test_get_vhd_info_of_a_missing_file_raises_vhd_exception(host):
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.get_vhd_info(_in_vm(host, "nope.vhdx"))


def test_a_child_whose_parent_is_gone_is_unresolved_and_cannot_be_opened_whole(host):
    child = _in_vm(host, "root.vhdx")
    host.vhdutils.create_differencing_vhd(child, _image(host))
    host.pathutils.remove(_image(host))
    assert host.vhdutils.get_vhd_info(child)["ParentResolved"] is False
    with pytest.raises(exceptions.VHDException):
        host.vhdutils.get_vhd_info(child, open_parents=True)


# -- PathUtils -------------------------------------------------------------------------


def test_exists_sees_files_and_folders_ignoring_case(host):
    assert host.pathutils.exists(_image(host))
    assert host.pathutils.exists(_image(host).upper())
    assert host.pathutils.exists(os.path.join(host.instances_path, "vm1"))
    assert not host.pathutils.exists(_in_vm(host, "nope"))


def test_makedirs_creates_parents_and_refuses_an_existing_folder(host):
    deep = os.path.join(host.instances_path, "a", "b", "c")
    host.pathutils.makedirs(deep)
    assert host.pathutils.exists(os.path.dirname(deep))
    with pytest.raises(FileExistsError):
        host.pathutils.makedirs(deep)
    host.pathutils.check_create_dir(deep)  # no error when it exists
    host.pathutils.check_create_dir(deep + "2")
    assert host.pathutils.exists(deep + "2")


def test_remove_of_a_missing_file_raises_file_not_found_with_the_windows_code(host):
    with pytest.raises(FileNotFoundError) as err:
        host.pathutils.remove(_in_vm(host, "nope.vhdx"))
    assert err.value.winerror == 2


def test_remove_deletes_a_file_but_refuses_a_folder(host):
    host.pathutils.remove(_image(host))
    assert not host.pathutils.exists(_image(host))
    with pytest.raises(PermissionError):
        host.pathutils.remove(os.path.join(host.instances_path, "vm1"))


def test_rmtree_removes_a_folder_with_its_files_and_subfolders(host):
    folder = os.path.join(host.instances_path, "vm1")
    host.vhdutils.create_differencing_vhd(_in_vm(host, "root.vhdx"), _image(host))
    host.pathutils.makedirs(os.path.join(folder, "sub"))
    host.pathutils.rmtree(folder)
    assert not host.pathutils.exists(folder)
    assert not host.pathutils.exists(os.path.join(folder, "sub"))
    assert _in_vm(host, "root.vhdx") not in host.view()["files"]
    assert host.pathutils.exists(_image(host))
    with pytest.raises(FileNotFoundError):
        host.pathutils.rmtree(folder)


def test_rename_moves_a_file_and_refuses_an_existing_destination(host):
    src = _in_vm(host, "a.vhdx")
    host.vhdutils.create_differencing_vhd(src, _image(host))
    dest = _in_vm(host, "b.vhdx")
    host.pathutils.rename(src, dest)
    assert not host.pathutils.exists(src)
    assert host.view()["files"][dest]["parent"] == _image(host)
    with pytest.raises(FileExistsError):
        host.pathutils.rename(dest, _image(host))
    with pytest.raises(FileNotFoundError):
        host.pathutils.rename(src, _in_vm(host, "c.vhdx"))


def test_rename_of_a_folder_moves_everything_in_it(host):
    src = os.path.join(host.instances_path, "vm1")
    host.vhdutils.create_differencing_vhd(_in_vm(host, "root.vhdx"), _image(host))
    dest = os.path.join(host.instances_path, "vm1-moved")
    host.pathutils.rename(src, dest)
    assert host.pathutils.exists(os.path.join(dest, "root.vhdx"))
    assert not host.pathutils.exists(src)


def test_renaming_a_parent_leaves_its_child_pointing_at_the_old_path(host):
    child = _in_vm(host, "root.vhdx")
    host.vhdutils.create_differencing_vhd(child, _image(host))
    old_parent = _image(host)
    host.pathutils.rename(old_parent, old_parent + ".bak")
    assert host.vhdutils.get_vhd_parent_path(child) == old_parent
    assert host.vhdutils.get_vhd_info(child)["ParentResolved"] is False
