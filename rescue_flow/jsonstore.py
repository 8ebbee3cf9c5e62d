"""A small JSON document on disk, shared safely by threads and processes.

Reads and writes happen under an exclusive lock on a sibling ``.lock`` file;
writes go to a temporary file that is fsynced and renamed over the old one,
so a crash leaves either the old or the new document, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: str) -> threading.RLock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(os.path.abspath(path), threading.RLock())


@contextlib.contextmanager
def file_lock(lock_path: str) -> Iterator[None]:
    """Exclusive lock between processes (and, with the thread lock, threads)."""
    with _thread_lock(lock_path):
        os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
        with open(lock_path, "a+b") as handle:
            if sys.platform == "win32":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                try:
                    yield
                finally:
                    handle.seek(0)
                    msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


class JsonDocument:
    """A JSON object in one file; ``update`` is a locked read-modify-write."""

    def __init__(self, path: str, default: Callable[[], Any] = dict) -> None:
        self.path = path
        self._default = default

    def _load(self) -> Any:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return self._default()

    def read(self) -> Any:
        with file_lock(self.path + ".lock"):
            return self._load()

    def update(self, change: Callable[[Any], T]) -> T:
        """Apply ``change`` to the document in place and save it; returns its result."""
        with file_lock(self.path + ".lock"):
            document = self._load()
            result = change(document)
            write_atomically(self.path, json.dumps(document, indent=2, sort_keys=True))
            return result
