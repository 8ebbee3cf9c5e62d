"""Translation of os-win's exceptions into rescue-flow's, transient or permanent.

The split decides what is retried, and follows what os-win 5.9.0 really
raises (docs/simulated-host.md, "What os-win raises"): the class alone does
not tell, the error code does.

- ``WMIJobFailed`` carries Msvm's return code: access denied, not supported,
  invalid parameter, invalid state, wrong data type and file not found fail
  the same way again (permanent); any other code, above all the generic
  32768 "Failed" that os-win itself retries, may pass on a retry.
- ``x_wmi`` (a WMI call that errored) carries an HRESULT: access denied,
  not found and invalid parameter are permanent; RPC and timeout errors are
  transient.
- ``OSError`` and Win32 errors: only a sharing violation (Windows error 32,
  a file in use) is transient; access denied (5), file not found (2) are not.
- Everything else, above all the NotFound family, is permanent.
"""

from __future__ import annotations

import ctypes

from rescue_flow import exceptions as rf_exc
from rescue_flow.hyperv.oswin import exceptions as os_exc

ERROR_SHARING_VIOLATION = 32

# Msvm_VirtualSystemManagementService return codes that no retry changes.
PERMANENT_JOB_CODES = frozenset({
    32769,  # Access denied
    32770,  # Not supported
    32773,  # Invalid parameter
    32775,  # Invalid state for this operation
    32776,  # Incorrect data type
    32779,  # File not found
})
# HRESULTs of a failed WMI call that no retry changes.
WBEM_E_NOT_FOUND = 0x80041002
PERMANENT_HRESULTS = frozenset({
    0x80041003,  # WBEM_E_ACCESS_DENIED
    WBEM_E_NOT_FOUND,
    0x80041008,  # WBEM_E_INVALID_PARAMETER
    0x80041010,  # WBEM_E_INVALID_CLASS
    0x80070005,  # E_ACCESSDENIED
})


def _error_code(exc: BaseException) -> object:
    for attribute in ("error_code", "winerror"):
        code = getattr(exc, attribute, None)
        if code is not None:
            return code
    return None


def wmi_hresult(exc: BaseException) -> int | None:
    """The HRESULT of an x_wmi, read where os-win reads it (excepinfo[5])."""
    com_error = getattr(exc, "com_error", None)
    try:
        return ctypes.c_uint(com_error.excepinfo[5]).value  # type: ignore[union-attr]
    except Exception:
        return None


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call may succeed."""
    if isinstance(exc, os_exc.WMIJobFailed):
        return _error_code(exc) not in PERMANENT_JOB_CODES
    if isinstance(exc, os_exc.x_wmi):
        return wmi_hresult(exc) not in PERMANENT_HRESULTS
    if isinstance(exc, os_exc.WMIException):
        return True
    return (isinstance(exc, (os_exc.Win32Exception, OSError, os_exc.WindowsError))
            and _error_code(exc) == ERROR_SHARING_VIOLATION)


def translate(operation: str, exc: BaseException) -> rf_exc.HyperVError:
    """The rescue-flow exception that stands for ``exc`` raised by ``operation``."""
    detail = f"{type(exc).__name__}: {exc}"
    if is_transient(exc):
        return rf_exc.TransientHyperVError(operation, detail)
    if isinstance(exc, (os_exc.NotFound, FileNotFoundError)) or \
            (isinstance(exc, os_exc.x_wmi) and wmi_hresult(exc) == WBEM_E_NOT_FOUND):
        return rf_exc.HyperVObjectNotFound(operation, detail)
    return rf_exc.PermanentHyperVError(operation, detail)


def is_oswin_error(exc: BaseException) -> bool:
    """True for what os-win raises (its own exceptions, WMI errors, OS errors)."""
    return isinstance(exc, (os_exc.OSWinException, os_exc.x_wmi, os_exc.WindowsError,
                            OSError))
