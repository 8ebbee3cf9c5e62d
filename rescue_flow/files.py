"""Files the worker writes, safe on Windows: bytes, whole, replaced with patience.

- **Binary.** Every descriptor is opened with ``os.O_BINARY`` where it exists
  (Windows): in text mode Windows turns ``\\n`` into ``\\r\\n`` and stops reading
  at a ``\\x1a``, so sizes and offsets (the simulated host's journal keys)
  would not match what was written.
- **Whole.** Data goes to a temporary file in the same folder, is written to
  the end (``os.write`` may write less than it was given) and fsynced, then
  moved over the target: a reader sees the old file or the new one, never
  half of one; a failure removes the temporary file and leaves the target.
- **Patient.** On Windows ``os.replace`` raises PermissionError while another
  process holds the target open without sharing delete (an antivirus scanner,
  a backup agent, an editor): normal, and brief. The replace is retried with
  backoff for at most :data:`REPLACE_TIMEOUT` seconds, then the error is
  raised.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import tenacity

O_BINARY: int = getattr(os, "O_BINARY", 0)
# How long a replace waits for another process to let go of the target.
REPLACE_TIMEOUT = 10.0


def open_fd(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` in binary mode."""
    return os.open(path, flags | O_BINARY, mode)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write fewer than it is given)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def replace(source: str, target: str, timeout: float | None = None) -> None:
    """``os.replace``, retried on PermissionError for a bounded time."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(PermissionError),
        wait=tenacity.wait_exponential(multiplier=0.01, max=0.5),
        stop=tenacity.stop_after_delay(REPLACE_TIMEOUT if timeout is None else timeout),
        reraise=True)
    retrying(os.replace, source, target)


def write_atomically(path: str, data: bytes, fsync: bool = True,
                     prefix: str = ".tmp-") -> None:
    """Replace ``path`` with ``data``, whole or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")  # binary
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
