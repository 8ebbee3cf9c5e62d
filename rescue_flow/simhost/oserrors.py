"""What os-win 5.9.0 raises, method by method: the class an injected fault raises.

Read from os-win's source (``os_win/utils/compute/vmutils.py``,
``jobutils.py``, ``network/networkutils.py``, ``storage/virtdisk/vhdutils.py``,
``pathutils.py``, ``_utils.py``). Each method belongs to one family, by how
it reaches Windows, and a fault raises what that path raises:

- lookup (a WMI query for one object, by name): permanent, the method's
  NotFound class; transient, x_wmi with RPC_S_SERVER_UNAVAILABLE.
- query (a host-wide WMI query): permanent, x_wmi with WBEM_E_ACCESS_DENIED;
  transient, x_wmi with RPC_S_CALL_FAILED.
- job (a WMI method and its job, jobutils.check_ret_val): WMIJobFailed,
  error code 32773 (permanent) or 32768 (transient).
- virtdisk (virtdisk.dll through Win32Utils): VHDWin32APIException, error
  code 2 (permanent) or 32 (transient).
- format (get_vhd_format: the extension, else the file's signature):
  VHDException (permanent); PermissionError, winerror 32 (transient).
- file (os and shutil, Python on Windows): PermissionError, winerror 5
  (permanent) or 32 (transient).
- never (os.path.exists, a constant): returns False, both modes.

32773 is Msvm's "Invalid parameter", 32768 its generic "Failed"; Win32 error
2 is "file not found", 5 "access denied", 32 a sharing violation (the file
is in use). ``os.path.exists`` swallows every OSError and answers False, so
a fault there makes a present file look absent, as on Windows.
``docs/simulated-host.md`` carries the per-method table;
``tests/contract/test_simhost_fault_classes.py`` checks every method.
"""

from __future__ import annotations

from typing import Any

from rescue_flow.simhost.oswin import exceptions

LOOKUP, QUERY, JOB, VIRTDISK, FORMAT, FILE, NEVER = (
    "lookup", "query", "job", "virtdisk", "format", "file", "never")

# Msvm_* method return codes (jobutils.check_ret_val puts them in error_code).
JOB_FAILED = 32768
JOB_ACCESS_DENIED = 32769
JOB_NOT_SUPPORTED = 32770
JOB_INVALID_PARAMETER = 32773
JOB_INVALID_STATE = 32775
JOB_STATE_EXCEPTION = 10  # Msvm_ConcreteJob.JobState "Exception"
# HRESULTs a failed WMI call carries (com_error.excepinfo[5]).
RPC_S_SERVER_UNAVAILABLE = 0x800706BA
RPC_S_CALL_FAILED = 0x800706BE
WBEM_E_ACCESS_DENIED = 0x80041003
WBEM_E_NOT_FOUND = 0x80041002
# Win32 errors.
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_SHARING_VIOLATION = 32

_VM = exceptions.HyperVVMNotFoundException
METHODS: dict[str, tuple[str, Any]] = {
    # vmutils: VMUtils._lookup_vm_check raises HyperVVMNotFoundException.
    **{name: (LOOKUP, _VM) for name in (
        "get_vm_generation", "get_vm_summary_info", "get_vm_state", "get_vm_memory_info",
        "get_instance_uuid", "get_vm_config_root_dir", "get_vm_scsi_controller",
        "get_vm_ide_controller", "get_vm_storage_paths", "get_vm_dvd_disk_paths",
        "get_vm_nic_names")},
    "get_disk_attachment_info": (LOOKUP, exceptions.DiskNotFound),
    # Counts the controller's drives; "Exceeded the maximum number of slots".
    "get_free_controller_slot": (LOOKUP, exceptions.HyperVException),
    "get_vnic_mac_address": (LOOKUP, exceptions.HyperVvNicNotFound),
    "get_vswitch_id": (LOOKUP, exceptions.HyperVvSwitchNotFound),
    "get_port_by_id": (LOOKUP, exceptions.HyperVvSwitchNotFound),
    **{name: (QUERY, None) for name in (
        "list_instance_notes", "list_instances", "vm_exists", "is_disk_attached",
        "get_vnic_ids")},
    **{name: (JOB, None) for name in (
        "set_vm_state", "soft_shutdown_vm", "create_vm", "update_vm", "destroy_vm",
        "create_scsi_controller", "attach_drive", "attach_ide_drive", "attach_scsi_drive",
        "attach_volume_to_controller", "detach_vm_disk", "set_boot_order", "create_nic",
        "destroy_nic", "enable_secure_boot", "connect_vnic_to_vswitch",
        "remove_switch_port")},
    **{name: (VIRTDISK, None) for name in (
        "create_differencing_vhd", "get_vhd_info", "get_vhd_parent_path")},
    "get_vhd_format": (FORMAT, None),
    **{name: (FILE, None) for name in (
        "makedirs", "check_create_dir", "remove", "rename", "rmtree")},
    "exists": (NEVER, False),
    "vswitch_port_needed": (NEVER, False),
}


class ComError(Exception):
    """Stands for pywintypes.com_error: os-win reads the HRESULT at excepinfo[5]."""

    def __init__(self, hresult: int, description: str) -> None:
        super().__init__(description)
        self.hresult = hresult
        self.excepinfo = (0, "SWbemServicesEx", description, None, 0, hresult)


def x_wmi(hresult: int, description: str) -> Exception:
    return exceptions.x_wmi(f"<x_wmi: {description} (0x{hresult:08X})>",
                            com_error=ComError(hresult, description))


def job_failed(code: int, message: str) -> exceptions.WMIJobFailed:
    return exceptions.WMIJobFailed(message, job_state=JOB_STATE_EXCEPTION,
                                   error_code=code)


def win_error(cls: type[OSError], errno_: int, winerror: int, message: str,
              path: Any = None) -> OSError:
    exc = cls(errno_, message, path)
    exc.winerror = winerror  # type: ignore[attr-defined]
    return exc


def family(method: str) -> str:
    return METHODS[method][0]


def never_raises(method: str) -> bool:
    return METHODS[method][0] == NEVER


def fallback(method: str) -> Any:
    """What a method that never raises answers when its call fails."""
    return METHODS[method][1]


def fault_error(method: str, transient: bool) -> BaseException:
    """The exception an injected fault of ``method`` raises."""
    kind, detail = METHODS[method]
    what = f"simulated {'transient' if transient else 'permanent'} fault in {method}"
    if kind == LOOKUP:
        if transient:
            return x_wmi(RPC_S_SERVER_UNAVAILABLE, f"{what}: the RPC server is unavailable")
        if detail is _VM:
            return _VM(message=f"{what}: VM not found", vm_name="?")
        return detail(f"{what}: not found")  # type: ignore[no-any-return]
    if kind == QUERY:
        if transient:
            return x_wmi(RPC_S_CALL_FAILED, f"{what}: the remote procedure call failed")
        return x_wmi(WBEM_E_ACCESS_DENIED, f"{what}: access denied")
    if kind == JOB:
        return job_failed(JOB_FAILED if transient else JOB_INVALID_PARAMETER, what)
    if kind == VIRTDISK:
        code = ERROR_SHARING_VIOLATION if transient else ERROR_FILE_NOT_FOUND
        return exceptions.VHDWin32APIException(
            f"Executing Win32 API function OpenVirtualDisk failed. Error code: {code}. "
            f"Error message: {what}", error_code=code)
    if kind == FORMAT and not transient:
        return exceptions.VHDException(f"Could not retrieve VHD format: {what}")
    if transient:  # FORMAT (reading the signature) or FILE
        return win_error(PermissionError, 13, ERROR_SHARING_VIOLATION,
                         f"The process cannot access the file because it is being "
                         f"used by another process ({what})")
    return win_error(PermissionError, 13, ERROR_ACCESS_DENIED,
                     f"Access is denied ({what})")


def error_class(method: str, transient: bool) -> tuple[type[BaseException], Any]:
    """The class (and error code, if any) a fault raises: for the docs table."""
    exc = fault_error(method, transient)
    code = getattr(exc, "winerror", None) or getattr(exc, "error_code", None)
    com = getattr(exc, "com_error", None)
    return type(exc), (com.hresult if com is not None else code)
