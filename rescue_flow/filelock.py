"""One exclusive lock per lock file, between threads and between processes.

A ``threading.RLock`` orders the threads of this process; an OS lock on the
file (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) orders the
processes. The descriptor stays open for the life of the process, and a
forked child opens its own: flock locks belong to the open file, so a
parent and a child sharing one descriptor would not exclude each other.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl


class FileLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self._thread_lock = threading.RLock()
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            fd = self._descriptor()
            if sys.platform == "win32":  # pragma: no cover - Windows only
                while True:
                    try:
                        os.lseek(fd, 0, os.SEEK_SET)
                        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                        break
                    except OSError:
                        continue  # LK_LOCK gives up after 10 s; keep waiting
                try:
                    yield
                finally:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)


_locks: dict[str, FileLock] = {}
_locks_guard = threading.Lock()


def lock_for(path: str) -> FileLock:
    """This process's lock on ``path`` (a fresh one after a fork)."""
    key = os.path.realpath(os.path.abspath(path))
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None or lock.pid != os.getpid():
            lock = FileLock(key)
            _locks[key] = lock
        return lock
