"""TaskFlow's SQLAlchemy persistence, made fast and flat.

TaskFlow's stock backend builds a new ``MetaData`` and table set on every
``get_connection()`` and uses ``NullPool`` on SQLite, so each of a flow's
storage transactions pays for both, and with SQLAlchemy 2.1 the rebuilt
table sets leak megabytes per flow (see FACTS.md; requirements pin
SQLAlchemy below 2.1). Here one ``Connection`` (one table set) is built per
backend and reused, the engine pools its connections, and SQLite runs in WAL
mode with ``synchronous=NORMAL``: a step's state survives a killed process,
and only the acceptance of a request pays for an fsync (see ``history``).

TaskFlow also rewrites every column of a step on each save, and every step of
a flow on each flow state change, building a fresh statement each time
(SQLAlchemy then spends longer on cache keys than SQLite on the write).
:class:`FastConnection` writes only the columns that changed, with
statements built once (what that saved: bench B1 in docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

import cachetools
import sqlalchemy as sa
from sqlalchemy import pool as sa_pool
from taskflow import exceptions as tf_exc
from taskflow.persistence import models
from taskflow.persistence.backends import impl_sqlalchemy

from rescue_flow.persistence.retrying import DEFAULT_RETRY_TIMEOUT, Retry

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                  "PRAGMA foreign_keys=ON")
DEFAULT_BUSY_TIMEOUT = 30.0


def is_sqlite(url: str | sa.engine.URL) -> bool:
    return sa.engine.make_url(url).drivername.startswith("sqlite")


def create_engine(url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sa.engine.Engine:
    """An engine with a real pool; SQLite gets WAL and a generous busy timeout."""
    if not is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)
    database = sa.engine.make_url(url).database
    if database in (None, "", ":memory:"):
        engine = sa.create_engine(url, poolclass=sa_pool.StaticPool,
                                  connect_args={"check_same_thread": False})
    else:
        # A fresh host has no state folder yet; SQLite would only say it
        # is "unable to open database file".
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        # One connection: SQLite takes one writer at a time, and a writer
        # that finds the file locked sleeps in SQLite's busy handler (1, 2,
        # 5, 10 ... ms), while one waiting for the pool wakes the moment the
        # connection is back (bench B5 in docs/benchmarks.md).
        engine = sa.create_engine(url, poolclass=sa_pool.QueuePool, pool_size=1,
                                  max_overflow=0,
                                  connect_args={"check_same_thread": False,
                                                "timeout": busy_timeout})

    @sa.event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return engine


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in after.items() if before.get(key) != value}


def _only_progress_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether a step's save changes its ``meta["progress"]`` and nothing else."""
    changed = _changed(before, after)
    if changed.keys() != {"meta"}:
        return False
    old, new = before.get("meta") or {}, changed["meta"] or {}
    return {**old, "progress": None} == {**new, "progress": None}


class FastConnection(impl_sqlalchemy.Connection):
    """TaskFlow's Connection, writing only the columns a save changed.

    TaskFlow's merge replaces every field with the incoming one, so the row
    after the update is the same as with the stock code; only writes that
    change nothing are left out.
    """

    def __init__(self, backend: Any, upgrade_lock: Any) -> None:
        super().__init__(backend, upgrade_lock)
        atoms, flows = self._tables.atomdetails, self._tables.flowdetails
        self._atom_update = atoms.update().where(atoms.c.uuid == sa.bindparam("_uuid"))
        self._flow_update = flows.update().where(flows.c.uuid == sa.bindparam("_uuid"))
        # TaskFlow builds ``insert(table).values(**row)`` for every row; the
        # same INSERT, given the row as parameters, is built once: a flow's
        # steps are all inserted as it starts (bench B1, docs/benchmarks.md).
        self._atom_insert = atoms.insert()
        self._flow_insert = flows.insert()

    def _insert_atom_details(self, conn: Any, ad: Any, parent_uuid: str) -> None:
        conn.execute(self._atom_insert, {**ad.to_dict(), "parent_uuid": parent_uuid,
                                         "atom_type": models.atom_detail_type(ad)})

    def _insert_flow_details(self, conn: Any, fd: Any, parent_uuid: str) -> None:
        conn.execute(self._flow_insert, {**fd.to_dict(), "parent_uuid": parent_uuid})
        for ad in fd:
            self._insert_atom_details(conn, ad, fd.uuid)

    def _update_atom_details(self, conn: Any, ad: Any, e_ad: Any) -> None:
        before = e_ad.to_dict()
        e_ad.merge(ad)
        changed = _changed(before, e_ad.to_dict())
        if changed:
            conn.execute(self._atom_update, {"_uuid": e_ad.uuid, **changed})

    def _update_flow_details(self, conn: Any, fd: Any, e_fd: Any) -> None:
        before = e_fd.to_dict()
        e_fd.merge(fd)
        changed = _changed(before, e_fd.to_dict())
        if changed:
            conn.execute(self._flow_update, {"_uuid": e_fd.uuid, **changed})
        for ad in fd:
            e_ad = e_fd.find(ad.uuid)
            if e_ad is None:
                e_fd.add(ad)
                self._insert_atom_details(conn, ad, fd.uuid)
            else:
                self._update_atom_details(conn, ad, e_ad)


class _Gone(Exception):
    """A remembered row is no longer in the database."""


class RememberingConnection(FastConnection):
    """Remembers each row it read or wrote, so that a save needs no read first.

    TaskFlow reads a step's row (and on a flow save, every step's) before
    each write, only to merge into it what it then writes whole. Here a save
    of a row this connection has seen compares with what it remembers and
    writes the changed columns, without reading; a save of a flow it has
    seen that brings new steps (as the flow starts) inserts them, without
    reading either. Safe because one flow is
    only ever run by one process at a time (the instance lock), and a
    process resumes flows only at its start, before it remembers anything.
    A row that is gone (purged) falls back to TaskFlow's read, which raises
    NotFound. At most ``size`` rows are remembered: enough for the rows of
    the flows in flight; more only costs memory for nothing, fewer only
    TaskFlow's read again (bench B4, docs/benchmarks.md).
    """

    def __init__(self, backend: Any, upgrade_lock: Any, size: int = 1024,
                 retry: Retry | None = None) -> None:
        super().__init__(backend, upgrade_lock)
        # TaskFlow's saves during a flow, retried on storage errors for a
        # bounded time (persistence/retrying.py); instance attributes, so
        # that the retried save calls the plain one (and TaskFlow's own
        # fallbacks inside it) without retrying twice.
        retry = retry or Retry(DEFAULT_RETRY_TIMEOUT)
        self.update_atom_details = retry(self.update_atom_details)  # type: ignore[method-assign]
        self.update_flow_details = retry(self.update_flow_details)  # type: ignore[method-assign]
        self._known: cachetools.LRUCache[str, dict[str, Any]] = \
            cachetools.LRUCache(maxsize=size)
        self._known_lock = threading.Lock()

    def _remember(self, uuid: str, values: dict[str, Any],
                  before: dict[str, Any] | None = None,
                  changed: dict[str, Any] | None = None) -> None:
        # A copy, since TaskFlow changes its objects in place. After a save
        # of a remembered row only the changed columns are copied: a flow
        # saves its rows dozens of times, results and all (bench B1,
        # docs/benchmarks.md). The remembered values are never changed, so
        # the new row can share the unchanged ones.
        if before is None or changed is None:
            values = copy.deepcopy(values)
        else:
            values = {**before, **copy.deepcopy(changed)}
        with self._known_lock:
            self._known[uuid] = values

    def _recall(self, uuid: str) -> dict[str, Any] | None:
        with self._known_lock:
            return self._known.get(uuid)

    def _forget(self, *uuids: str) -> None:
        with self._known_lock:
            for uuid in uuids:
                self._known.pop(uuid, None)

    # TaskFlow's own paths, which read first: remember what they leave.

    def _insert_atom_details(self, conn: Any, ad: Any, parent_uuid: str) -> None:
        super()._insert_atom_details(conn, ad, parent_uuid)
        self._remember(ad.uuid, ad.to_dict())

    def _update_atom_details(self, conn: Any, ad: Any, e_ad: Any) -> None:
        super()._update_atom_details(conn, ad, e_ad)
        self._remember(e_ad.uuid, e_ad.to_dict())

    def _insert_flow_details(self, conn: Any, fd: Any, parent_uuid: str) -> None:
        super()._insert_flow_details(conn, fd, parent_uuid)
        self._remember(fd.uuid, fd.to_dict())

    def _update_flow_details(self, conn: Any, fd: Any, e_fd: Any) -> None:
        super()._update_flow_details(conn, fd, e_fd)
        self._remember(e_fd.uuid, e_fd.to_dict())

    # Saves of remembered rows: no read.

    def _write(self, conn: Any, statement: Any, uuid: str, before: dict[str, Any],
               after: dict[str, Any]) -> dict[str, Any]:
        changed = _changed(before, after)
        if changed and conn.execute(statement, {"_uuid": uuid, **changed}).rowcount != 1:
            raise _Gone(uuid)
        return changed

    def update_atom_details(self, atom_detail: Any) -> Any:
        before = self._recall(atom_detail.uuid)
        if before is None:
            return super().update_atom_details(atom_detail)
        after = atom_detail.to_dict()
        if _only_progress_changed(before, after):
            # TaskFlow saves a step's progress on its own as the step starts
            # (0.0) and ends (1.0): many of a flow's transactions, for
            # nothing (bench B3, docs/benchmarks.md). Nothing reads it back. It is written
            # with the step's next save or the flow's (a flow state change
            # saves its steps' changed columns, and every flow ends with one),
            # measured against what is stored, which is what is remembered
            # here: the rows a flow leaves are the same. A crash in between
            # leaves a step's progress one mark behind, as it would a
            # moment earlier.
            return atom_detail
        try:
            with self._engine.begin() as conn:
                changed = self._write(conn, self._atom_update, atom_detail.uuid, before,
                                      after)
        except _Gone:
            self._forget(atom_detail.uuid)
            return super().update_atom_details(atom_detail)
        except sa.exc.SQLAlchemyError as exc:
            raise tf_exc.StorageFailure(
                f"Failed updating atom details with uuid '{atom_detail.uuid}'", exc) from exc
        self._remember(atom_detail.uuid, after, before, changed)
        return atom_detail

    def update_flow_details(self, flow_detail: Any) -> Any:
        rows = [(flow_detail, self._flow_update)] + [(ad, self._atom_update)
                                                    for ad in flow_detail]
        known = [self._recall(detail.uuid) for detail, _ in rows]
        if known[0] is None:  # a flow it has not seen (a resumed one): TaskFlow reads it
            return super().update_flow_details(flow_detail)
        after = [detail.to_dict() for detail, _ in rows]
        changes: list[dict[str, Any] | None] = []
        try:
            with self._engine.begin() as conn:
                for (detail, statement), old, new in zip(rows, known, after, strict=True):
                    if old is None:
                        # A step it has not seen is a new one (TaskFlow gives each
                        # a fresh uuid), saved as the flow starts: inserted as
                        # TaskFlow would, without reading the flow and its steps
                        # back first (bench B1, docs/benchmarks.md). Remembered
                        # below, once committed.
                        FastConnection._insert_atom_details(self, conn, detail,
                                                            flow_detail.uuid)
                        changes.append(None)
                    else:
                        changes.append(self._write(conn, statement, detail.uuid, old, new))
        except (_Gone, sa.exc.IntegrityError):
            # A row purged meanwhile (its steps' inserts then break the
            # foreign key), or a step forgotten (past ``size``) that is in
            # the database after all: TaskFlow's read and merge, which raises
            # NotFound for a purged flow.
            self._forget(*(detail.uuid for detail, _ in rows))
            return super().update_flow_details(flow_detail)
        except sa.exc.SQLAlchemyError as exc:
            raise tf_exc.StorageFailure(
                f"Failed updating flow details with uuid '{flow_detail.uuid}'", exc) from exc
        for (detail, _), old, new, changed in zip(rows, known, after, changes, strict=True):
            self._remember(detail.uuid, new, old, changed)
        return flow_detail


class FastSQLAlchemyBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow's SQL backend with one reusable connection object per backend."""

    def __init__(self, engine: sa.engine.Engine, retry: Retry | None = None) -> None:
        super().__init__({"connection": str(engine.url)}, engine=engine)
        self.retry = retry or Retry(DEFAULT_RETRY_TIMEOUT)
        self._connection: RememberingConnection | None = None
        self._connection_lock = threading.Lock()

    def get_connection(self) -> RememberingConnection:
        # TaskFlow closes connections with contextlib.closing(); the stock
        # Connection.close() does nothing, so sharing one is safe: each call
        # on it checks a pooled DB connection out and back in.
        with self._connection_lock:
            if self._connection is None:
                connection = RememberingConnection(self, upgrade_lock=self._upgrade_lock,
                                                   retry=self.retry)
                if not self._validated:  # type: ignore[has-type]
                    connection.validate(max_retries=self._max_retries)
                    self._validated = True
                self._connection = connection
            return self._connection
