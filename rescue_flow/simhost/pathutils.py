"""SimPathUtils: os_win.utils.pathutils.PathUtils on the simulated file system.

os-win's PathUtils is a thin layer over ``os`` and ``shutil`` running on
Windows, so this class raises what those raise *on Windows*: a missing file
is ``FileNotFoundError``, removing a folder with ``remove`` is
``PermissionError``, renaming onto an existing path is ``FileExistsError``.
Each error carries the Windows error code in ``winerror``, as on Windows.
Names compare case-insensitively, like NTFS. Renaming a file does not
update what points at it: a differencing child keeps its parent's old path
and a VM keeps the old path of its disk, as on a real host.
"""

from __future__ import annotations

import errno
import os

from rescue_flow.simhost import oserrors
from rescue_flow.simhost.engine import SimUtils, oswin_call
from rescue_flow.simhost.model import HostState

_WINERROR = {errno.ENOENT: 2, errno.EACCES: 5, errno.EEXIST: 183, errno.ENOTDIR: 267}
_SHARING_VIOLATION = ("The process cannot access the file because it is being used "
                      "by another process")
_ERROR_CLASS = {errno.ENOENT: FileNotFoundError, errno.EACCES: PermissionError,
                errno.EEXIST: FileExistsError, errno.ENOTDIR: NotADirectoryError}


def _os_error(code: int, path: str, dest: str | None = None) -> OSError:
    exc = _ERROR_CLASS[code](code, os.strerror(code), path, None, dest)
    exc.winerror = _WINERROR[code]  # type: ignore[attr-defined]
    return exc


def _in_use(path: str, vm_name: str, dest: str | None = None) -> OSError:
    """What Windows raises to remove or rename a file a VM holds open: a
    PermissionError with winerror 32; os-win retries it for
    [os_win] file_in_use_timeout, then lets it through."""
    exc = PermissionError(errno.EACCES, f"{_SHARING_VIOLATION} ({vm_name})", path,
                          None, dest)
    exc.winerror = oserrors.ERROR_SHARING_VIOLATION  # type: ignore[attr-defined]
    return exc


def _check_not_held(st: HostState, keys: list[str], path: str,
                    dest: str | None = None) -> None:
    for key in keys:
        holder = st.holder_of(st.data["files"][key]["path"])
        if holder is not None:
            raise _in_use(path, holder, dest)


def _below(st: HostState, folder: str) -> tuple[list[str], list[str]]:
    """Keys of the folders and files inside ``folder`` (itself included)."""
    key = st.key(folder)
    prefix = key.rstrip(st.paths.sep) + st.paths.sep
    dirs = [k for k in st.data["dirs"] if k == key or k.startswith(prefix)]
    files = [k for k in st.data["files"] if k.startswith(prefix)]
    return dirs, files


def _moved(st: HostState, path: str, src: str, dest: str) -> str:
    # ``path`` is inside ``src`` (same key prefix), whatever its case.
    return str(st.paths.join(dest, path[len(src):].lstrip(st.paths.sep)))


class SimPathUtils(SimUtils):
    """Files and folders: exists, create, remove, rename."""

    @oswin_call(mutates=False)
    def exists(self, st: HostState, path):
        return st.exists(path)

    @oswin_call(mutates=True)
    def makedirs(self, st: HostState, path):
        if st.exists(path):
            raise _os_error(errno.EEXIST, path)
        st.add_dir(path)

    @oswin_call(mutates=True)
    def check_create_dir(self, st: HostState, path):
        if not st.exists(path):
            st.add_dir(path)

    @oswin_call(mutates=True)
    def remove(self, st: HostState, path):
        if st.dir_exists(path):
            raise _os_error(errno.EACCES, path)
        if st.file(path) is None:
            raise _os_error(errno.ENOENT, path)
        _check_not_held(st, [st.key(path)], path)
        del st.data["files"][st.key(path)]

    @oswin_call(mutates=True)
    def rmtree(self, st: HostState, path):
        if st.file(path) is not None:
            raise _os_error(errno.ENOTDIR, path)
        if not st.dir_exists(path):
            raise _os_error(errno.ENOENT, path)
        dirs, files = _below(st, path)
        _check_not_held(st, files, path)
        for key in dirs:
            del st.data["dirs"][key]
        for key in files:
            del st.data["files"][key]

    @oswin_call(mutates=True)
    def rename(self, st: HostState, src, dest):
        # Records move between keys, or (a change of case) leave and come back
        # under one key, which moves it last: only a full comparison sees that.
        st.touch_all("files")
        st.touch_all("dirs")
        record = st.file(src)
        is_dir = st.dir_exists(src)
        if record is None and not is_dir:
            raise _os_error(errno.ENOENT, src, dest)
        only_case_changes = st.key(src) == st.key(dest)
        if st.exists(dest) and not only_case_changes:
            raise _os_error(errno.EEXIST, src, dest)
        if not st.parent_dir_exists(dest):
            raise _os_error(errno.ENOENT, src, dest)
        if record is not None:
            _check_not_held(st, [st.key(src)], src, dest)
            del st.data["files"][st.key(src)]
            record["path"] = st.normpath(dest)
            st.data["files"][st.key(dest)] = record
            return
        if st.key(dest).startswith(st.key(src) + st.paths.sep):
            raise _os_error(errno.EACCES, src, dest)  # a folder into itself
        src = st.normpath(src)
        dirs, files = _below(st, src)
        _check_not_held(st, files, src, dest)
        moved_dirs = [_moved(st, st.data["dirs"].pop(k), src, dest) for k in dirs]
        moved_files = [st.data["files"].pop(k) for k in files]
        for path in moved_dirs:
            st.add_dir(path)
        for rec in moved_files:
            rec["path"] = st.normpath(_moved(st, rec["path"], src, dest))
            st.data["files"][st.key(rec["path"])] = rec
