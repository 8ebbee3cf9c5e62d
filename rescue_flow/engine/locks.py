"""Exclusive file locks between threads and processes, from oslo.concurrency.

:func:`file_lock` is what OpenStack services use (``oslo_concurrency.lockutils``:
an in-process semaphore for the threads, then fasteners' ``InterProcessLock``
on the file for the processes: ``fcntl.lockf`` on POSIX, ``msvcrt.locking``
on Windows, polled with a growing sleep rather than spun). The file is opened
when the lock is taken and closed when it is released: no descriptor stays
open per lock. Re-entrant within a thread, like the lock it replaces.

:func:`instance_lock`: one flow per instance at a time, across threads and
processes on this host. The worker serializes requests per instance itself;
this lock also covers a ``rescue-flow run`` typed by an operator while the
worker is busy with the same instance. Its files (one per instance uuid) are
pruned when released: on POSIX the holder unlinks the file before letting go
and a process that was waiting on the unlinked file sees that it no longer
is the file at that path and takes the lock again; on Windows a file that
another process holds open cannot be removed, and is left for the next
holder to prune.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

from oslo_concurrency import lockutils

from rescue_flow.requests import canonical_uuid

_held = threading.local()
_semaphores: tuple[int, lockutils.Semaphores] = (os.getpid(), lockutils.Semaphores())
_semaphores_guard = threading.Lock()


def _thread_locks() -> lockutils.Semaphores:
    """This process's semaphores: a forked child gets fresh ones, since one a
    parent's thread held at the fork would stay held in the child forever."""
    global _semaphores
    with _semaphores_guard:
        if _semaphores[0] != os.getpid():
            _semaphores = (os.getpid(), lockutils.Semaphores())
        return _semaphores[1]


def _same_file(lock: lockutils.InterProcessLock, path: str) -> bool:
    try:
        mine, there = os.fstat(lock.lockfile.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def file_lock(path: str, prune: bool = False,
              on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock on ``path``; ``prune`` removes the file after.

    ``on_wait`` is called once, before waiting, when another process holds
    the lock (threads of this process wait on a semaphore first, without it).
    """
    path = os.path.abspath(path)
    held: set[str] = _held.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    with lockutils.internal_lock(path, semaphores=_thread_locks()):
        lock = lockutils.external_lock(os.path.basename(path),
                                       lock_path=os.path.dirname(path))
        waited = False
        while True:
            if not lock.acquire(blocking=False):
                if on_wait is not None and not waited:
                    waited = True
                    on_wait()
                lock.acquire(delay=0.01, max_delay=0.1)
            if sys.platform == "win32" or _same_file(lock, path):
                break
            lock.release()  # pruned while we waited on it: lock the new file
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            if prune and sys.platform != "win32":
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            lock.release()
            if prune and sys.platform == "win32":  # pragma: no cover - Windows
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    os.remove(path)  # fails while another process holds it open


@contextlib.contextmanager
def instance_lock(lock_dir: str, instance_uuid: str,
                  on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    # canonical_uuid keeps the file name inside lock_dir whatever came in.
    name = canonical_uuid(instance_uuid, "instance uuid") + ".lock"
    with file_lock(os.path.join(lock_dir, name), prune=True, on_wait=on_wait):
        yield
