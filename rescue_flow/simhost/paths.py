"""How the simulated host names files: Windows paths, or POSIX ones for tests.

A real Hyper-V host has Windows paths, whatever machine the worker runs on,
so the simulated host speaks them by default, on Linux as on Windows:
``ntpath`` builds and splits them, drive letters and UNC shares root them,
``/`` and ``\\`` both separate, and names compare ignoring case (NTFS).
The style is chosen once, from ``instances_path`` when the host is created,
and kept in the state (``path_style``): ``C:\\OpenStack\\Instances`` or
``\\\\server\\share\\instances`` make a Windows host, ``/sim/instances`` a
POSIX one (kept for tests that want paths beside real files on Linux).

Extended-length paths (``\\\\?\\C:\\...``, ``\\\\?\\UNC\\server\\share\\...``)
are what Windows' own file APIs make of them, since os-win passes every
path through to ``os`` and the Win32 API unchanged: the same file as
without the prefix, but taken literally, with no ``..`` resolved and ``/``
part of a name.
"""

from __future__ import annotations

import ntpath
import posixpath
from typing import Any

WINDOWS = "windows"
POSIX = "posix"
STYLES = (WINDOWS, POSIX)
_EXTENDED = "\\\\?\\"


def style_of(path: str) -> str | None:
    """``windows`` for a drive or UNC path, ``posix`` for ``/...``, else None."""
    if not isinstance(path, str) or not path:
        return None
    if path.startswith(_EXTENDED) or path[:2] in ("\\\\", "//"):
        return WINDOWS
    if len(path) >= 3 and path[0].isalpha() and path[1] == ":" and path[2] in "\\/":
        return WINDOWS
    if path.startswith("/"):
        return POSIX
    return None


def module(style: str) -> Any:
    return ntpath if style == WINDOWS else posixpath


def normalise(style: str, path: str) -> str:
    """The path as the host reports it back: separators and ``..`` resolved
    (an extended-length path is kept literally, as Windows does)."""
    if style == WINDOWS and path.startswith(_EXTENDED):
        return path
    return str(module(style).normpath(path))


def key(style: str, path: str) -> str:
    """The name under which the file system finds ``path``: case-folded, and
    on Windows without an extended-length prefix."""
    if style == WINDOWS:
        if path.startswith(_EXTENDED):
            rest = path[len(_EXTENDED):]
            if rest[:4].upper() == "UNC\\":
                rest = "\\\\" + rest[4:]
            return rest.rstrip("\\").casefold() if len(rest) > 3 else rest.casefold()
        return ntpath.normpath(path).casefold()
    return posixpath.normpath(path).casefold()


def check_instances_path(path: str, style: str | None) -> str:
    """The style of a new host on ``path``; ValueError when they disagree."""
    found = style_of(path)
    if style is None:
        style = found
    if style not in STYLES:
        raise ValueError(f"instances_path {path!r} is neither an absolute Windows path "
                         f"(C:\\... or \\\\server\\share\\...) nor an absolute POSIX path")
    if found != style:
        raise ValueError(f"instances_path {path!r} is not a {style} path")
    return style
