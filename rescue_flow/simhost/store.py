"""The state in an SQLite database, shared by threads and processes.

``<state_file>`` is an SQLite database (Python's sqlite3, WAL journal):

- ``entries(section, key, value, seq)``: the sections that grow with the
  host (``vms``, ``files``, ``dirs``), one row per VM, file or folder, in
  the order Python's dict keeps them (``seq``);
- ``meta(name, value)``: everything else (``instances_path``, ``switches``,
  ``images``, ``faults``, ``latency``, ...), one JSON value each;
- ``calls(id, record)``: the call log, one JSON record per os-win call.

SQLite gives what the hand-built snapshot and journal did by hand: every
access runs in a ``BEGIN IMMEDIATE`` transaction (threads of this process
queue on a lock first, other processes on SQLite's write lock); a change
writes only the rows it touched (rescue_flow.simhost.changes finds them),
so it costs the same on a host of 2 VMs or 400; a committed change survives
the crash of the process that made it (WAL, ``synchronous=NORMAL``: the
crash tests kill the calling process, not the machine), and a process
killed mid-call leaves nothing of that call, not even half of it.

A process keeps the state it loaded and reads it again only when another
connection has committed since (``PRAGMA data_version``). The call record,
a fault's counter and the call's effect commit together when the call
ends; a crash fault commits them first (``Transaction.make_durable``), since
``os._exit`` skips the commit.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from rescue_flow.simhost import changes

T = TypeVar("T")
# Check every tracked change against a full comparison (the tests set it).
VERIFY_TOUCHED = os.environ.get("RESCUE_FLOW_SIMHOST_VERIFY") == "1"
# Sections kept a row per entry; the rest of the state is kept whole in meta.
ROW_SECTIONS = ("vms", "files", "dirs")
_BUSY_TIMEOUT_S = 120.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (section TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (section, key));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL);
"""


class StateFileMissing(FileNotFoundError):
    """The state file does not exist: the host was never initialised."""


class StateFileCorrupt(ValueError):
    """The state file is not a simulated host's database: it cannot be read
    whole, and a shorter host would lie."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Shared:
    """Per-process, per-state-file connection and cache, shared by all stores."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.conn: sqlite3.Connection | None = None
        self.data: dict[str, Any] | None = None
        # The state as stored: what a change is measured against.
        self.stored: dict[str, Any] | None = None
        self.version: int | None = None
        self.next_seq: dict[str, int] = {}

    def connection(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = _connect(self.path)
        return self.conn

    def forget(self) -> None:
        """Drop the cached state (it may be ahead of the database)."""
        self.data = self.stored = None
        self.version = None

    def close(self) -> None:
        self.forget()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _connect(path: str) -> sqlite3.Connection:
    """A connection to an existing state file (sqlite3 would create a new one)."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a simulated host's state "
                                "file", path)
    if not os.path.exists(path):
        raise StateFileMissing(f"simulated host state file {path} does not exist; create "
                               f"it with 'rescue-flow sim init'")
    return _open(path)


def _open(path: str) -> sqlite3.Connection:
    """A connection to the state file, created if missing, with its tables."""
    # isolation_level=None: transactions are begun and ended here, explicitly.
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StateFileCorrupt(
            f"simulated host state file {path} is not a simulated host's database "
            f"({exc}): restore it, or move it aside and create a new host with "
            f"'rescue-flow sim init'") from None
    return conn


_registry: dict[str, _Shared] = {}
_registry_lock = threading.Lock()


def _shared_for(path: str) -> _Shared:
    with _registry_lock:
        shared = _registry.get(path)
        if shared is None or shared.pid != os.getpid():
            # A forked child must not use the parent's connection or cache.
            shared = _Shared(path)
            _registry[path] = shared
        return shared


class Transaction:
    """The loaded state while the lock is held."""

    def __init__(self, store: StateStore, shared: _Shared) -> None:
        self._store = store
        self._shared = shared
        self.data: dict[str, Any] = shared.data if shared.data is not None else {}

    def commit(self, touched: Mapping[str, set[str] | None] | None = None) -> bool:
        """Write what changed in ``data`` since it was loaded or last
        committed; False if nothing did. ``touched``: the entries that may
        have changed (model.HostState.touched); None compares everything."""
        return self._store._commit(self._shared, touched)

    def discard(self) -> None:
        """Forget in-memory changes; the next load reads the database."""
        self._shared.forget()

    def make_durable(self) -> None:
        """Commit now what this transaction wrote (before a simulated crash)."""
        conn = self._shared.connection()
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")


class StateStore:
    """Locked access to one simulated host's database."""

    def __init__(self, state_file: str) -> None:
        self.path = os.path.realpath(os.path.abspath(state_file))
        self._cache: _Shared | None = None

    def _shared(self) -> _Shared:
        cache = self._cache  # the registry's lock, once per store and process
        if cache is None or cache.pid != os.getpid():
            cache = self._cache = _shared_for(self.path)
        return cache

    def exists(self) -> bool:
        return os.path.exists(self.path)

    @contextmanager
    def locked(self) -> Iterator[Transaction]:
        """Hold the lock and yield the current state (loaded or cached).

        What the body wrote (commit, call records) is committed at the end,
        also when it raises: a failed call stays in the call log and keeps
        its fault's count.
        """
        shared = self._shared()
        with shared.lock:
            if not os.path.exists(self.path):  # removed under a live connection
                shared.close()
            conn = shared.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._load(shared, conn)
                yield Transaction(self, shared)
            except BaseException:
                self._end(shared, conn)
                raise
            self._end(shared, conn)

    @staticmethod
    def _end(shared: _Shared, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            shared.forget()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def replace(self, data: dict[str, Any]) -> None:
        """Overwrite the state (and empty the call log)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        shared = self._shared()
        with shared.lock:
            shared.close()
            try:
                _open(self.path).close()  # creates it, or checks it
            except ValueError:  # not a database (a state file of old): replace it
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(self.path + suffix):
                        os.remove(self.path + suffix)
                _open(self.path).close()
            conn = shared.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM entries")
                conn.execute("DELETE FROM meta")
                conn.execute("DELETE FROM calls")
                _write_all(conn, data)
            except BaseException:
                conn.execute("ROLLBACK")
                shared.forget()
                raise
            conn.execute("COMMIT")
            shared.forget()

    def peek(self, read: Callable[[dict[str, Any]], T]) -> T | None:
        """``read(state)`` on the state this process has cached, if no other
        connection changed the database since; None otherwise (or while
        another thread holds the lock): then take the lock.

        For values only the lock holder replaces (a method's latency), so that
        a call need not queue for the lock twice: once to learn how long to
        sleep, once to apply itself.
        """
        shared = self._shared()
        if shared.data is None or not shared.lock.acquire(blocking=False):
            return None
        try:
            data = shared.data
            if data is None or _data_version(shared.connection()) != shared.version:
                return None
            return read(data)
        finally:
            shared.lock.release()

    def read_from_disk(self) -> dict[str, Any]:
        """The state as a process that never saw it loads it (no cache)."""
        conn = _connect(self.path)
        try:
            return _read_whole(conn, self.path)[0]
        finally:
            conn.close()

    # -- call log ---------------------------------------------------------

    def append_call(self, record: dict[str, Any]) -> None:
        """Append one call record; the caller holds the lock."""
        line = json.dumps(record, separators=(",", ":"), default=repr)
        self._shared().connection().execute("INSERT INTO calls (record) VALUES (?)",
                                            (line,))

    def read_calls(self) -> list[dict[str, Any]]:
        with self.locked():
            rows = self._shared().connection().execute(
                "SELECT record FROM calls ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def clear_calls(self) -> None:
        with self.locked():
            self._shared().connection().execute("DELETE FROM calls")

    # -- loading and writing ------------------------------------------------

    def _load(self, shared: _Shared, conn: sqlite3.Connection) -> None:
        version = _data_version(conn)
        if shared.data is not None and version == shared.version:
            return  # nothing changed since this process last looked
        data, next_seq = _read_whole(conn, shared.path)
        shared.data, shared.stored = data, changes.clone(data)
        shared.next_seq = next_seq
        shared.version = version

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
        _write_record(shared.connection(), shared, record)
        # What another process will load: normalised by JSON, like the rows.
        stored_record = json.loads(_dumps(record))
        changes.apply(shared.stored, stored_record)
        changes.apply(shared.data, changes.clone(stored_record))
        return True


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _read_whole(conn: sqlite3.Connection,
                path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The whole host, or StateFileCorrupt: never a host short of what a
    damaged page or row held (a VM that vanished would be the worse lie)."""
    try:
        return _read_all(conn)
    except sqlite3.OperationalError:
        raise  # locked, busy, I/O: not the content's fault
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise StateFileCorrupt(
            f"simulated host state file {path} cannot be read whole ({exc}): restore "
            f"it, or move it aside and create a new host with 'rescue-flow sim init'"
        ) from None


def _read_all(conn: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, int]]:
    data: dict[str, Any] = {}
    for name, value in conn.execute("SELECT name, value FROM meta"):
        data[name] = json.loads(value)
    if not data:
        raise ValueError("the simulated host's database holds no host: run "
                         "'rescue-flow sim init'")
    next_seq = {}
    for section in ROW_SECTIONS:
        rows = conn.execute("SELECT key, value, seq FROM entries WHERE section = ? "
                            "ORDER BY seq", (section,)).fetchall()
        data[section] = {key: json.loads(value) for key, value, _ in rows}
        next_seq[section] = (rows[-1][2] + 1) if rows else 0
    return data, next_seq


def _write_all(conn: sqlite3.Connection, data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name in ROW_SECTIONS:
            conn.executemany(
                "INSERT INTO entries (section, key, value, seq) VALUES (?, ?, ?, ?)",
                [(name, key, _dumps(entry), seq)
                 for seq, (key, entry) in enumerate(value.items())])
        else:
            conn.execute("INSERT INTO meta (name, value) VALUES (?, ?)",
                         (name, _dumps(value)))


def _write_record(conn: sqlite3.Connection, shared: _Shared,
                  record: dict[str, Any]) -> None:
    """Write a changes record: rows for the row sections, whole values else."""
    data = shared.data
    assert data is not None
    for name in record.get("drop", ()):
        conn.execute("DELETE FROM meta WHERE name = ?", (name,))
    for name, value in record.get("whole", {}).items():
        if name in ROW_SECTIONS:  # reordered: the section is written again
            conn.execute("DELETE FROM entries WHERE section = ?", (name,))
            conn.executemany(
                "INSERT INTO entries (section, key, value, seq) VALUES (?, ?, ?, ?)",
                [(name, key, _dumps(entry), seq)
                 for seq, (key, entry) in enumerate(value.items())])
            shared.next_seq[name] = len(value)
        else:
            _put_meta(conn, name, value)
    for name, keys in record.get("del", {}).items():
        if name in ROW_SECTIONS:
            conn.executemany("DELETE FROM entries WHERE section = ? AND key = ?",
                             [(name, key) for key in keys])
        else:
            _put_meta(conn, name, data[name])
    for name, entries in record.get("set", {}).items():
        if name not in ROW_SECTIONS:
            _put_meta(conn, name, data[name])
            continue
        for key, entry in entries.items():
            # A new key goes last (its seq), a changed one keeps its place.
            seq = shared.next_seq.get(name, 0)
            changed = conn.execute(
                "INSERT INTO entries (section, key, value, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (section, key) DO UPDATE SET value = excluded.value",
                (name, key, _dumps(entry), seq))
            if changed.rowcount and key not in (shared.stored or {}).get(name, {}):
                shared.next_seq[name] = seq + 1


def _put_meta(conn: sqlite3.Connection, name: str, value: Any) -> None:
    conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
                 "DO UPDATE SET value = excluded.value", (name, _dumps(value)))
