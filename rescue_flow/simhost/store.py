"""The state file: one JSON document, shared by threads and processes.

Every access runs under an exclusive lock on the sibling
``<state_file>.lock`` (:mod:`rescue_flow.filelock`: threads of this process,
then other processes, wait). Writes are atomic: a temp file in
the same folder, flushed and fsynced, then ``os.replace``; a reader never
sees half a file and a crash leaves either the old or the new state.

Parsing is skipped when the file is the one this process loaded last,
judged by ``(st_mtime_ns, st_size, st_ino)``. Because the file is only ever
replaced, never rewritten in place, a new inode means new content. On POSIX
the process keeps the loaded file open so its inode cannot be recycled by a
later temp file (which would make a changed file look unchanged); Windows
refuses to replace an open file, and NTFS file ids are not reused quickly,
so there the file is closed after reading.

The call log ``<state_file>.calls`` holds one JSON line per call, appended
with ``O_APPEND`` while the lock is held, so its order is the order in
which calls took effect.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rescue_flow.filelock import lock_for

_KEEP_ANCHOR = sys.platform != "win32"


class StateFileMissing(FileNotFoundError):
    """The state file does not exist: the host was never initialised."""


class _Shared:
    """Per-process, per-state-file lock and cache, shared by all stores."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.key: tuple[int, int, int] | None = None
        self.data: dict[str, Any] | None = None
        self.text: str | None = None
        self.anchor_fd: int | None = None

    def forget(self) -> None:
        """Drop the cached state (it may be ahead of the file)."""
        self.key = self.data = self.text = None
        if self.anchor_fd is not None:
            os.close(self.anchor_fd)
            self.anchor_fd = None


_registry: dict[str, _Shared] = {}
_registry_lock = threading.Lock()


def _shared_for(path: str) -> _Shared:
    with _registry_lock:
        shared = _registry.get(path)
        if shared is None or shared.pid != os.getpid():
            # A forked child must not reuse the parent's lock descriptor:
            # flock locks belong to the open file, so parent and child
            # would not exclude each other.
            shared = _Shared(path)
            _registry[path] = shared
        return shared


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class Transaction:
    """The loaded state while the lock is held."""

    def __init__(self, store: StateStore, shared: _Shared) -> None:
        self._store = store
        self._shared = shared
        self.data: dict[str, Any] = shared.data or {}

    def write(self) -> None:
        """Write ``data`` to the file now (atomically, fsynced)."""
        self._store._write(self._shared, self.data, _dumps(self.data))

    def write_if_changed(self) -> bool:
        text = _dumps(self.data)
        if text == self._shared.text:
            return False
        self._store._write(self._shared, self.data, text)
        return True

    def discard(self) -> None:
        """Forget in-memory changes; the next load re-reads the file."""
        self._shared.forget()


class StateStore:
    """Locked, atomic access to one state file and its call log."""

    def __init__(self, state_file: str) -> None:
        self.path = os.path.realpath(os.path.abspath(state_file))
        self.lock_path = self.path + ".lock"
        self.calls_path = self.path + ".calls"

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextmanager
    def locked(self) -> Iterator[Transaction]:
        """Hold the lock and yield the current state (loaded or cached)."""
        shared = _shared_for(self.path)
        with lock_for(self.lock_path).held():
            self._load(shared)
            yield Transaction(self, shared)

    def replace(self, data: dict[str, Any]) -> None:
        """Overwrite the state (and empty the call log) under the lock."""
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        shared = _shared_for(self.path)
        with lock_for(self.lock_path).held():
            self._write(shared, data, _dumps(data))
            self._truncate_calls()

    # -- call log ---------------------------------------------------------

    def append_call(self, record: dict[str, Any]) -> None:
        """Append one call record; the caller holds the lock."""
        line = json.dumps(record, separators=(",", ":"), default=repr) + "\n"
        fd = os.open(self.calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def read_calls(self) -> list[dict[str, Any]]:
        with self.locked():
            try:
                with open(self.calls_path, encoding="utf-8") as f:
                    return [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return []

    def clear_calls(self) -> None:
        with self.locked():
            self._truncate_calls()

    def _truncate_calls(self) -> None:
        with open(self.calls_path, "w", encoding="utf-8"):
            pass

    # -- internals --------------------------------------------------------

    def _load(self, shared: _Shared) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            shared.forget()
            raise StateFileMissing(
                f"simulated host state file {self.path} does not exist; "
                f"create it with 'rescue-flow sim init'") from None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == shared.key and shared.data is not None:
            return
        shared.forget()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except BaseException:
            os.close(fd)
            raise
        text = b"".join(chunks).decode("utf-8")
        try:
            data = json.loads(text)
        except ValueError as exc:
            os.close(fd)
            raise ValueError(f"simulated host state file {self.path} is not valid "
                             f"JSON: {exc}") from None
        self._remember(shared, fd, st, data, text)

    def _write(self, shared: _Shared, data: dict[str, Any], text: str) -> None:
        folder = os.path.dirname(self.path)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".simhost-", suffix=".tmp")
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            shared.forget()
            raise
        shared.forget()
        self._remember(shared, fd, os.fstat(fd), data, text)

    @staticmethod
    def _remember(shared: _Shared, fd: int, st: os.stat_result,
                  data: dict[str, Any], text: str) -> None:
        shared.key = (st.st_mtime_ns, st.st_size, st.st_ino)
        shared.data = data
        shared.text = text
        if _KEEP_ANCHOR:
            shared.anchor_fd = fd
        else:  # pragma: no cover - Windows
            os.close(fd)
