"""Translation of os-win's exceptions into rescue-flow's, transient or permanent.

The split decides what is retried. Transient: a WMI job that failed, a WMI
call that errored or timed out, a file in use (Windows error 32, sharing
violation). Permanent: everything else, above all the NotFound family and
invalid arguments, which no retry can fix.
"""

from __future__ import annotations

from rescue_flow import exceptions as rf_exc
from rescue_flow.hyperv.oswin import exceptions as os_exc

ERROR_SHARING_VIOLATION = 32

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    os_exc.WMIJobFailed,
    os_exc.x_wmi,
    os_exc.WMIException,
)


def _error_code(exc: BaseException) -> object:
    for attribute in ("error_code", "winerror"):
        code = getattr(exc, attribute, None)
        if code is not None:
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same call may succeed."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    return (isinstance(exc, (os_exc.Win32Exception, OSError, os_exc.WindowsError))
            and _error_code(exc) == ERROR_SHARING_VIOLATION)


def translate(operation: str, exc: BaseException) -> rf_exc.HyperVError:
    """The rescue-flow exception that stands for ``exc`` raised by ``operation``."""
    detail = f"{type(exc).__name__}: {exc}"
    if is_transient(exc):
        return rf_exc.TransientHyperVError(operation, detail)
    if isinstance(exc, (os_exc.NotFound, FileNotFoundError)):
        return rf_exc.HyperVObjectNotFound(operation, detail)
    return rf_exc.PermanentHyperVError(operation, detail)


def is_oswin_error(exc: BaseException) -> bool:
    """True for what os-win raises (its own exceptions, WMI errors, OS errors)."""
    return isinstance(exc, (os_exc.OSWinException, os_exc.x_wmi, os_exc.WindowsError,
                            OSError))
