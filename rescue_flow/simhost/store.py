"""The state: a snapshot file and a journal of changes, shared by threads
and processes.

Files, side by side:

- ``<state_file>``: the snapshot, one JSON document: the state, plus
  ``"journal_epoch"``, a token naming the journal that continues it;
- ``<state_file>.journal``: a first line ``{"epoch": token}``, then one
  JSON line per change (:mod:`rescue_flow.simhost.changes`): what a call
  changed, a VM or a file, never the whole host;
- ``<state_file>.lock``, ``<state_file>.calls``: the lock and the call log.

Why a journal: writing the whole host after each change cost a JSON dump of
every VM, under the host-wide lock. At 200 VMs that was ~3 ms of CPU per
change and made the simulated host, not the latencies it injects, the
limit of many flows at once (docs/benchmarks.md, B3). A change now costs
what it changed. When the journal outgrows the snapshot, the writer that
notices writes a new snapshot with a new epoch, then a new journal; a
crash in between leaves a snapshot whose epoch the old journal does not
carry, and that journal is ignored: the snapshot already holds it.

Every access runs under an exclusive lock on ``<state_file>.lock``
(:mod:`rescue_flow.filelock`: threads of this process, then other
processes, wait). A process keeps the state it loaded and, while the lock
is held, re-reads only what changed: nothing when neither file changed
(judged by the snapshot's ``(st_mtime_ns, st_size, st_ino)`` and the
journal's ``(st_ino, st_size)``), the journal's new lines when only the
journal grew, everything otherwise. Files are only ever replaced or
appended to, never rewritten in place, so a new inode means new content; on
POSIX the process keeps both files open, so their inodes cannot be recycled
by a later file. (Windows refuses to replace an open file, so there they
are closed after use; NTFS file ids are not reused quickly.)

Durability: snapshots are written to a temp file, fsynced, then
``os.replace``-d, so a reader never sees half a snapshot. Journal lines are
appended with one ``O_APPEND`` write each and not fsynced: the simulated
host stands for Hyper-V across crashes of the *calling process* (which
the crash tests kill), and the page cache outlives a process. A torn last
line (a machine that lost power) is ignored.

The call log holds one JSON line per call, appended with ``O_APPEND``
while the lock is held, so its order is the order in which calls took
effect.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from rescue_flow.filelock import FileLock, lock_for
from rescue_flow.simhost import changes

T = TypeVar("T")
_KEEP_OPEN = sys.platform != "win32"
# Check every tracked change against a full comparison (the tests set it).
VERIFY_TOUCHED = os.environ.get("RESCUE_FLOW_SIMHOST_VERIFY") == "1"
EPOCH_KEY = "journal_epoch"
# A journal this much larger than the snapshot is folded into a new one. The
# floor keeps small hosts from rewriting their snapshot every few changes.
_COMPACT_MIN_BYTES = 256 * 1024


class StateFileMissing(FileNotFoundError):
    """The state file does not exist: the host was never initialised."""


class StateFileCorrupt(ValueError):
    """The state file or its journal cannot be read whole: loading what can
    be read would show a host that lost VMs, disks or files."""


class _Shared:
    """Per-process, per-state-file cache, shared by all stores of the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.data: dict[str, Any] | None = None
        # The state as stored: what a change is measured against.
        self.stored: dict[str, Any] | None = None
        self.snapshot_key: tuple[int, int, int] | None = None
        self.snapshot_size = 0
        self.snapshot_fd: int | None = None
        self.epoch: str | None = None
        self.journal_key: tuple[int, int] | None = None
        self.journal_fd: int | None = None

    def forget(self) -> None:
        """Drop the cached state (it may be ahead of the files)."""
        self.data = self.stored = None
        self.snapshot_key = self.journal_key = None
        self.epoch = None
        self.close_files()

    def close_files(self) -> None:
        for name in ("snapshot_fd", "journal_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


_registry: dict[str, _Shared] = {}
_registry_lock = threading.Lock()


def _shared_for(path: str) -> _Shared:
    with _registry_lock:
        shared = _registry.get(path)
        if shared is None or shared.pid != os.getpid():
            # A forked child must not reuse the parent's descriptors or cache
            # (flock locks belong to the open file; the cache is the parent's).
            shared = _Shared(path)
            _registry[path] = shared
        return shared


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


class Transaction:
    """The loaded state while the lock is held."""

    def __init__(self, store: StateStore, shared: _Shared) -> None:
        self._store = store
        self._shared = shared
        self.data: dict[str, Any] = shared.data if shared.data is not None else {}

    def commit(self, touched: Mapping[str, set[str] | None] | None = None) -> bool:
        """Store what changed in ``data`` since it was loaded or last
        committed; False if nothing did. ``touched``: the entries that may
        have changed (model.HostState.touched); None compares everything."""
        return self._store._commit(self._shared, touched)

    def discard(self) -> None:
        """Forget in-memory changes; the next load re-reads the files."""
        self._shared.forget()


class StateStore:
    """Locked access to one simulated host's files."""

    def __init__(self, state_file: str) -> None:
        self.path = os.path.realpath(os.path.abspath(state_file))
        self.lock_path = self.path + ".lock"
        self.calls_path = self.path + ".calls"
        self.journal_path = self.path + ".journal"
        self._lock: FileLock | None = None
        self._cache: _Shared | None = None

    def _shared(self) -> _Shared:
        cache = self._cache  # the registry's lock, once per store and process
        if cache is None or cache.pid != os.getpid():
            cache = self._cache = _shared_for(self.path)
        return cache

    def _file_lock(self) -> FileLock:
        # lock_for resolves the path (lstat per folder): once per store and
        # process, not once per call.
        lock = self._lock
        if lock is None or lock.pid != os.getpid():
            lock = self._lock = lock_for(self.lock_path)
        return lock

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextmanager
    def locked(self) -> Iterator[Transaction]:
        """Hold the lock and yield the current state (loaded or cached)."""
        shared = self._shared()
        with self._file_lock().held():
            try:
                self._load(shared)
                yield Transaction(self, shared)
            finally:
                if not _KEEP_OPEN:  # pragma: no cover - Windows
                    # Windows refuses to replace a file another process holds
                    # open; the keys stay valid (NTFS ids are not soon reused).
                    shared.close_files()

    def replace(self, data: dict[str, Any]) -> None:
        """Overwrite the state (and empty the call log) under the lock."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        shared = self._shared()
        with self._file_lock().held():
            shared.forget()
            self._write_snapshot(shared, data)
            self._truncate_calls()

    def peek(self, read: Callable[[dict[str, Any]], T]) -> T | None:
        """``read(state)`` without the lock, on the state this process has
        cached, if neither file changed since; None otherwise (take the lock).

        For values only the lock holder replaces (a method's latency), so that
        a call need not queue for the lock twice: once to learn how long to
        sleep, once to apply itself.
        """
        shared = self._shared()
        data = shared.data
        if data is None or self._file_keys() != (shared.snapshot_key, shared.journal_key):
            return None
        return read(data)

    def read_from_disk(self) -> dict[str, Any]:
        """The state as a process that never saw it loads it (no cache)."""
        with self._file_lock().held():
            fresh = _Shared(self.path)
            try:
                self._load(fresh)
                assert fresh.data is not None
                return fresh.data
            finally:
                fresh.forget()

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

    # -- loading ------------------------------------------------------------

    def _file_keys(self) -> tuple[tuple[int, int, int] | None, tuple[int, int] | None]:
        """The snapshot's and the journal's keys as they are on disk now
        (None: no such file), to compare with the ones last loaded."""
        try:
            st = os.stat(self.path)
            snapshot: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            snapshot = None
        try:
            jst = os.stat(self.journal_path)
            journal: tuple[int, int] | None = (jst.st_ino, jst.st_size)
        except FileNotFoundError:
            journal = None
        return snapshot, journal

    def _load(self, shared: _Shared) -> None:
        snapshot, journal = self._file_keys()
        if snapshot is None:
            shared.forget()
            raise StateFileMissing(
                f"simulated host state file {self.path} does not exist; "
                f"create it with 'rescue-flow sim init'")
        if shared.data is not None and snapshot == shared.snapshot_key:
            known = shared.journal_key
            if journal == known:
                return  # nothing changed since this process last looked
            if journal and known and journal[0] == known[0] and journal[1] > known[1]:
                self._read_journal(shared, known[1])  # only appended to
                return
        shared.forget()
        self._read_snapshot(shared)
        self._read_journal(shared, 0)

    def _read_snapshot(self, shared: _Shared) -> None:
        if os.path.isdir(self.path):  # os.open takes a folder; reading it fails unnamed
            raise IsADirectoryError(errno.EISDIR, "Is a directory", self.path)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            text = _read_all(fd, 0).decode("utf-8")
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise StateFileCorrupt(
                    f"simulated host state file {self.path} is not valid JSON ({exc}): "
                    f"{_RECOVER}") from None
            if not isinstance(data, dict):
                raise StateFileCorrupt(
                    f"simulated host state file {self.path} holds a JSON "
                    f"{type(data).__name__}, not a host: {_RECOVER}")
        except BaseException:
            os.close(fd)
            raise
        shared.epoch = data.pop(EPOCH_KEY, None)
        shared.data = data
        shared.stored = changes.clone(data)
        shared.snapshot_key = (st.st_mtime_ns, st.st_size, st.st_ino)
        shared.snapshot_size = st.st_size
        shared.snapshot_fd = _keep_or_close(fd)

    def _read_journal(self, shared: _Shared, offset: int) -> None:
        """Apply the journal's lines from ``offset`` on (0: from its header)."""
        assert shared.data is not None and shared.stored is not None
        if shared.journal_fd is None:
            try:
                fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                return  # a host written before journals, or crashed mid-compaction
            shared.journal_fd = fd
        raw = _read_all(shared.journal_fd, offset)
        st = os.fstat(shared.journal_fd)
        lines = raw.split(b"\n")
        # A line is complete only with its newline; a torn last line is ignored.
        complete, used = lines[:-1], len(raw) - len(lines[-1])
        if offset == 0:
            header = _parse_line(complete.pop(0)) if complete else None
            if header is None or header.get("epoch") != shared.epoch \
                    or shared.epoch is None:
                # Not this snapshot's journal (a compaction was cut short):
                # the snapshot already holds all of it.
                os.close(shared.journal_fd)
                shared.journal_fd = None
                return
        for number, line in enumerate(complete, 1):
            record = _parse_line(line)
            if record is None:
                # A complete line (torn ones are cut off above) that is not a
                # change: skipping it, or everything after it, would show a
                # host without the changes it recorded.
                # Lines before this read: the header when read from the start.
                before = 1 if offset == 0 else \
                    _read_all(shared.journal_fd, 0)[:offset].count(b"\n")
                shared.forget()  # what was applied so far is no state at all
                raise StateFileCorrupt(_journal_corrupt(self.journal_path, before + number))
            changes.apply(shared.data, record)
            changes.apply(shared.stored, changes.clone(record))
        shared.journal_key = (st.st_ino, offset + used)

    # -- writing ------------------------------------------------------------

    def _commit(self, shared: _Shared,
                touched: Mapping[str, set[str] | None] | None) -> bool:
        if shared.data is None or shared.stored is None:
            return False
        record = changes.diff(shared.stored, shared.data, touched)
        if VERIFY_TOUCHED and touched is not None \
                and not changes.replays_to(shared.stored, record, shared.data):
            missed = changes.diff(shared.stored, shared.data)
            shared.forget()  # the change is not stored, nor kept in memory
            raise AssertionError(
                "simulated host: a call changed entries it did not mark as "
                f"touched (model.HostState.touch); touched {touched}, missed: {missed}")
        if record is None:
            return False
        fd = self._journal_for_append(shared)
        if fd is None:
            self._write_snapshot(shared, shared.data)
            return True
        assert shared.journal_key is not None
        line = (_dumps(record) + "\n").encode("utf-8")
        os.write(fd, line)
        # What another process will load: normalised by JSON, like the files.
        stored_record = json.loads(line)
        changes.apply(shared.stored, stored_record)
        changes.apply(shared.data, changes.clone(stored_record))
        size = shared.journal_key[1] + len(line)
        shared.journal_key = (shared.journal_key[0], size)
        if size > max(_COMPACT_MIN_BYTES, shared.snapshot_size):
            self._write_snapshot(shared, shared.data)
        return True

    def _journal_for_append(self, shared: _Shared) -> int | None:
        """The journal to append to; None when a new snapshot must be written
        instead (no journal continues this snapshot, or its last line is
        torn: a line appended after it would be lost with it)."""
        if shared.journal_key is None:
            return None
        if shared.journal_fd is None:
            try:
                shared.journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                return None
        if os.fstat(shared.journal_fd).st_size != shared.journal_key[1]:
            return None
        return shared.journal_fd

    def _write_snapshot(self, shared: _Shared, data: dict[str, Any]) -> None:
        """Replace the snapshot with ``data`` and start a fresh journal."""
        epoch = uuid.uuid4().hex
        text = _dumps({**data, EPOCH_KEY: epoch})
        folder = os.path.dirname(self.path)
        snapshot_fd, snapshot_st = _replace_file(self.path, folder, text, fsync=True)
        shared.forget()
        journal_fd, journal_st = _replace_file(
            self.journal_path, folder, _dumps({"epoch": epoch}) + "\n", fsync=False)
        shared.data = json.loads(text)
        del shared.data[EPOCH_KEY]
        shared.stored = changes.clone(shared.data)
        shared.epoch = epoch
        shared.snapshot_key = (snapshot_st.st_mtime_ns, snapshot_st.st_size,
                               snapshot_st.st_ino)
        shared.snapshot_size = snapshot_st.st_size
        shared.snapshot_fd = _keep_or_close(snapshot_fd)
        shared.journal_key = (journal_st.st_ino, journal_st.st_size)
        shared.journal_fd = journal_fd  # kept open: the next change appends to it


def _replace_file(path: str, folder: str, text: str, fsync: bool
                  ) -> tuple[int, os.stat_result]:
    """Write ``text`` to a temp file and move it over ``path``; return an
    open descriptor (appending) and its stat."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".simhost-", suffix=".tmp")
    try:
        os.write(fd, text.encode("utf-8"))
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return fd, os.fstat(fd)


def _read_all(fd: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # os.pread is POSIX-only
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


_RECOVER = ("restore it from a backup, or start a new simulated host with "
            "'rescue-flow sim init'")


def _journal_corrupt(path: str, line: int) -> str:
    return (f"simulated host journal {path}: line {line} is not a JSON change, so the "
            "changes from there on cannot be read: repair or remove that line (the "
            f"changes it recorded are then lost), or {_RECOVER}")


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _keep_or_close(fd: int) -> int | None:
    if _KEEP_OPEN:
        return fd
    os.close(fd)  # pragma: no cover - Windows
    return None
