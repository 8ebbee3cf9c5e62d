"""SimVHDUtils: os_win.utils.storage.virtdisk.vhdutils.VHDUtils, simulated.

Files have a format, a kind and maybe a parent, but no content. Errors are
``exceptions.VHDWin32APIException`` (a ``VHDException``), as virtdisk.dll
failures reach os-win's callers, with the Win32 error code a real host
gives. The os-win parameters carry no type hints: ``inspect.signature``
compares annotations and os-win has none.
"""

from __future__ import annotations

import ntpath
from typing import Any

from rescue_flow.simhost.engine import SimUtils, oswin_call
from rescue_flow.simhost.model import HostState, same_resource
from rescue_flow.simhost.oswin import constants, exceptions

# os_win.utils.winapi.constants, which may not be imported here (it loads
# Windows libraries): GET_VIRTUAL_DISK_INFO_* members, storage device ids,
# and the Win32 errors CreateVirtualDisk / OpenVirtualDisk return.
INFO_SIZE, INFO_PARENT_LOCATION, INFO_STORAGE_TYPE = 1, 3, 6
INFO_PROVIDER_SUBTYPE, INFO_IS_LOADED = 7, 13
_DEVICE_IDS = {constants.DISK_FORMAT_VHD: 2, constants.DISK_FORMAT_VHDX: 3}
_VENDOR_MICROSOFT = "EC984AEC-A0F9-47E9-901F-71415A66345B"
ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, ERROR_FILE_EXISTS = 2, 3, 80
ERROR_VIRTDISK_NOT_VIRTUAL_DISK = 0xC03A0015
_KIND_SUBTYPE = {"fixed": constants.VHD_TYPE_FIXED, "dynamic": constants.VHD_TYPE_DYNAMIC,
                 "differencing": constants.VHD_TYPE_DIFFERENCING}
_BLOCK_SIZE = {constants.DISK_FORMAT_VHD: 2 << 20, constants.DISK_FORMAT_VHDX: 32 << 20}
_DIFF_PHYSICAL_SIZE = 4 << 20  # a fresh differencing disk holds only metadata


def _win32_error(func: str, code: int, message: str) -> exceptions.VHDWin32APIException:
    return exceptions.VHDWin32APIException(
        f"Executing Win32 API function {func} failed. Error code: {code}. "
        f"Error message: {message}", error_code=code)


def _extension_format(path: str) -> str:
    # ntpath splits on both separators, so it reads POSIX paths right too.
    return ntpath.splitext(path)[1][1:].upper()


def _open(st: HostState, vhd_path: Any) -> dict[str, Any]:
    """The file's record, or the error OpenVirtualDisk would give."""
    fmt = _format(st, vhd_path)
    record = st.file(vhd_path)
    if record is None:
        raise _win32_error("OpenVirtualDisk", ERROR_FILE_NOT_FOUND,
                           f"The system cannot find the file specified: {vhd_path}")
    if fmt not in _DEVICE_IDS or record["format"] not in _DEVICE_IDS:
        raise _win32_error("OpenVirtualDisk", ERROR_VIRTDISK_NOT_VIRTUAL_DISK,
                           f"{vhd_path} is not a virtual disk")
    return record


def _format(st: HostState, vhd_path: Any) -> str:
    # os-win goes by the extension; an unknown extension falls back to the
    # file's signature when the file exists (here: its recorded format), and
    # is returned as is when it does not.
    if not isinstance(vhd_path, str):
        raise exceptions.VHDException(f"Could not retrieve VHD format: {vhd_path}")
    fmt = _extension_format(vhd_path)
    if fmt not in _DEVICE_IDS:
        record = st.file(vhd_path)
        if record is not None:
            fmt = record["format"] if record["format"] in _DEVICE_IDS else ""
    if not fmt:
        raise exceptions.VHDException(f"Could not retrieve VHD format: {vhd_path}")
    return fmt


class SimVHDUtils(SimUtils):
    """Virtual disk files: differencing disks, format and chain queries."""

    @oswin_call(mutates=True)
    def create_differencing_vhd(self, st: HostState, path, parent_path):
        """Create ``path`` as a child of ``parent_path`` (same format).

        Fails like CreateVirtualDisk: the child's format comes from its
        extension and must be the parent's; the parent must exist; the child
        must not; its folder must exist.
        """
        fmt = _extension_format(path) if isinstance(path, str) else ""
        if fmt not in _DEVICE_IDS:
            raise _win32_error("CreateVirtualDisk", ERROR_VIRTDISK_NOT_VIRTUAL_DISK,
                               f"unsupported virtual disk extension: {path}")
        parent = _open(st, parent_path)
        if parent["format"] != fmt:
            raise _win32_error("CreateVirtualDisk", ERROR_VIRTDISK_NOT_VIRTUAL_DISK,
                               f"a {fmt} disk cannot have a {parent['format']} parent")
        if st.exists(path):
            raise _win32_error("CreateVirtualDisk", ERROR_FILE_EXISTS,
                               f"The file exists: {path}")
        if not st.parent_dir_exists(path):
            raise _win32_error("CreateVirtualDisk", ERROR_PATH_NOT_FOUND,
                               f"The system cannot find the path specified: {path}")
        st.add_file(path, fmt, "differencing", parent=parent["path"],
                    virtual_size=parent["virtual_size"])

    @oswin_call(mutates=False)
    def get_vhd_format(self, st: HostState, vhd_path):
        return _format(st, vhd_path)

    @oswin_call(mutates=False)
    def get_vhd_info(self, st: HostState, vhd_path, info_members=None,
                     open_parents=False):
        """The members os-win returns: VirtualSize, PhysicalSize, BlockSize,
        SectorSize, ParentResolved, ParentPath, DeviceId, VendorId,
        ProviderSubtype, IsLoaded.

        ParentResolved is True when the parent file exists. ``open_parents``
        makes a missing parent an error, as opening the whole chain would.
        """
        record = _open(st, vhd_path)
        if open_parents:
            parent = record["parent"]
            while parent is not None:
                parent = _open(st, parent)["parent"]
        members = info_members or (INFO_SIZE, INFO_PARENT_LOCATION, INFO_STORAGE_TYPE,
                                   INFO_PROVIDER_SUBTYPE, INFO_IS_LOADED)
        info: dict[str, Any] = {}
        for member in members:
            info.update(_member(st, record, member))
        return info

    @oswin_call(mutates=False)
    def get_vhd_parent_path(self, st: HostState, vhd_path):
        return _open(st, vhd_path)["parent"] or None


def _member(st: HostState, record: dict[str, Any], member: int) -> dict[str, Any]:
    fmt = record["format"]
    if member == INFO_SIZE:
        differencing = record["kind"] == "differencing"
        return {"VirtualSize": record["virtual_size"],
                "PhysicalSize": _DIFF_PHYSICAL_SIZE if differencing
                else record["virtual_size"],
                "BlockSize": _BLOCK_SIZE[fmt], "SectorSize": 512}
    if member == INFO_PARENT_LOCATION:
        parent = record["parent"]
        # Not a differencing disk: virtdisk leaves the structure zeroed.
        return {"ParentResolved": parent is not None and st.file(parent) is not None,
                "ParentPath": parent or ""}
    if member == INFO_STORAGE_TYPE:
        return {"DeviceId": _DEVICE_IDS[fmt], "VendorId": _VENDOR_MICROSOFT}
    if member == INFO_PROVIDER_SUBTYPE:
        return {"ProviderSubtype": _KIND_SUBTYPE.get(record["kind"],
                                                     constants.VHD_TYPE_DYNAMIC)}
    if member == INFO_IS_LOADED:
        # In use by a VM that is not off.
        loaded = any(drive["type"] != "passthrough"
                     and same_resource(drive["path"], record["path"])
                     and vm["state"] != constants.HYPERV_VM_STATE_DISABLED
                     for _, vm, _, _, drive in st.drives())
        return {"IsLoaded": loaded}
    raise _win32_error("GetVirtualDiskInformation", 87, f"invalid info member {member}")
