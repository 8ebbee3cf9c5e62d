"""The request history: every request durably recorded before anything else.

``accept`` is the one write that must survive a power cut before the
message is acknowledged, so it alone asks SQLite for a full fsync; step
updates that follow may lose their last moments on a power cut (never on a
killed process), and a resumed flow re-runs that step, idempotently.
Accepts commit in groups: those that arrive while one is being written
wait, and the next writer records them all in one fsynced transaction;
each returns only once its own row is durable. With one fsync per request,
SQLite writers queued behind each other's fsync in its busy handler, and
the worker took requests in at a fraction of a bare listener's rate (bench
B5 in docs/benchmarks.md).

Each request gets a TaskFlow logbook; each flow run for it (a clean-up, then
the rescue, say) a flow detail in that book, which is what a resume loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from taskflow import exceptions as tf_exc
from taskflow import states as tf_states
from taskflow.persistence import models

from rescue_flow.outcome import Result
from rescue_flow.persistence import quarantine, schema
from rescue_flow.persistence.backend import FastSQLAlchemyBackend, create_engine, is_sqlite
from rescue_flow.persistence.retrying import DEFAULT_RETRY_TIMEOUT, Retry
from rescue_flow.requests import Request

# Where earlier rescue-flow kept quarantined instances (in [DEFAULT] state_path);
# imported once into the history (persistence/quarantine.py).
LEGACY_QUARANTINE_FILE = "quarantine.json"
_table = schema.requests_table
# TaskFlow's table of steps, only as far as ``steps`` needs to order them.
_atomdetails = sa.table("atomdetails", sa.column("uuid"), sa.column("parent_uuid"),
                        sa.column("created_at"))
_LAST = datetime.datetime.max
# Built once: building them per call cost more than SQLite's write (benches
# B5 and B1, docs/benchmarks.md).
_UPDATE = _table.update().where(_table.c.request_id == sa.bindparam("_request_id"))
_GET = _table.select().where(_table.c.request_id == sa.bindparam("_request_id"))
_KNOWN = sa.select(_table.c.request_id).where(
    _table.c.request_id.in_(sa.bindparam("ids", expanding=True)))
_INSERT = _table.insert()
_PING = schema.markers_table.update().where(sa.false()).values(value=None)
# TaskFlow indexes neither parent_uuid column, yet reads a flow's steps by
# parent_uuid on every flow state change: each flow scanned every step ever
# recorded, so flows grew slower as the history grew (bench B1h,
# docs/benchmarks.md).
_PARENT_INDEXES = (("flowdetails", "rescue_flow_flowdetails_parent_idx"),
                   ("atomdetails", "rescue_flow_atomdetails_parent_idx"))


# History's methods that touch the database (each retried on its own; accept
# through _insert_new, so that a group commit is retried whole).
_RETRIED = ("_insert_new", "get", "new_flow_detail", "last_flow",
            "finish", "unfinished")


def _started(book: models.LogBook) -> list[models.FlowDetail]:
    """The book's flows that began to run, in the order they were created.

    A process killed while TaskFlow was still setting a flow up (before its
    first step) leaves a flow detail that never ran, possibly with its
    inputs half-saved. Nothing on the host happened for it: it is ignored,
    and the request starts a fresh flow.
    """
    details = sorted(book, key=lambda detail: detail.meta.get("sequence", 0))
    return [detail for detail in details
            if detail.state not in (None, tf_states.PENDING)]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    request: Request
    state: str
    book_uuid: str | None
    outcome: str | None
    result: dict[str, Any] | None
    received_at: datetime.datetime
    finished_at: datetime.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> RequestRecord:
        return cls(Request.from_dict(json.loads(row.request)), row.state, row.book_uuid,
                   row.outcome, json.loads(row.result) if row.result else None,
                   row.received_at, row.finished_at)


class _Accept:
    """One accept waiting for the group commit that records it."""

    def __init__(self, request: Request, row: dict[str, Any]) -> None:
        self.request = request
        self.row = row
        self.done = False
        self._answer: tuple[bool, RequestRecord] | None = None
        self._error: Exception | None = None

    def finish(self, answer: tuple[bool, RequestRecord] | None = None,
               error: Exception | None = None) -> None:
        self._answer, self._error, self.done = answer, error, True

    def answer(self) -> tuple[bool, RequestRecord]:
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer


class History:
    """Every read and write here is retried on storage errors for a bounded
    time (:mod:`rescue_flow.persistence.retrying`), then raises
    :class:`~rescue_flow.exceptions.StorageUnavailable`."""

    def __init__(self, engine: sa.engine.Engine, host: str,
                 retry: Retry | None = None) -> None:
        self.engine = engine
        self.retry = retry or Retry(DEFAULT_RETRY_TIMEOUT)
        self.backend = FastSQLAlchemyBackend(engine, self.retry)
        self.host = host
        for name in _RETRIED:
            setattr(self, name, self.retry(getattr(self, name)))
        self._group = threading.Condition()
        self._waiting: list[_Accept] = []
        self._writing = False

    @classmethod
    def from_conf(cls, conf: Any, wait: bool = False) -> History:
        """The configured history, its tables created or upgraded.

        ``wait``: ride out a database that does not answer yet, as every
        later read and write does (the worker, starting as a service). A
        command an operator runs says at once what is wrong instead.
        """
        history = cls(create_engine(conf.persistence.connection,
                                    conf.persistence.sqlite_busy_timeout),
                      conf.host, Retry.from_conf(conf))
        if wait:
            history.retry(history.upgrade)()
        else:
            history.upgrade()
        quarantine.import_file(history.engine,
                               os.path.join(conf.state_path, LEGACY_QUARANTINE_FILE),
                               conf.host)
        return history

    def upgrade(self) -> None:
        """Create or upgrade TaskFlow's tables and ours; safe to repeat."""
        with contextlib.closing(self.backend.get_connection()) as connection:
            connection.upgrade()
        schema.metadata.create_all(self.engine)
        taskflow_tables = sa.MetaData()
        for table, name in _PARENT_INDEXES:
            parent = sa.Table(table, taskflow_tables, sa.Column("parent_uuid", sa.String(36)))
            sa.Index(name, parent.c.parent_uuid).create(self.engine, checkfirst=True)

    def close(self) -> None:
        """Close the pooled database connections (TaskFlow leaves the engine open)."""
        self.backend.close()
        self.engine.dispose()

    @contextlib.contextmanager
    def _fsynced(self) -> Iterator[sa.engine.Connection]:
        with self.engine.connect() as connection:
            sqlite = is_sqlite(self.engine.url)
            if sqlite:
                connection.exec_driver_sql("PRAGMA synchronous=FULL")
                connection.commit()  # SQLAlchemy 2 autobegins even for a PRAGMA
            try:
                with connection.begin():
                    yield connection
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    connection.commit()

    def accept(self, request: Request) -> tuple[bool, RequestRecord]:
        """Record ``request`` durably; ``(False, earlier record)`` for a duplicate."""
        mine = _Accept(request, {
            "request_id": request.request_id, "action": request.action,
            "instance_uuid": request.instance_uuid, "host": request.host or self.host,
            "source": request.source, "request": json.dumps(request.to_dict()),
            "state": schema.ACCEPTED, "received_at": utcnow()})
        with self._group:
            self._waiting.append(mine)
            while not mine.done and self._writing:
                self._group.wait()
            if mine.done:  # a writer recorded it with its own group
                return mine.answer()
            self._writing = True
            group, self._waiting = self._waiting, []
        try:
            self._record(group)
        finally:
            with self._group:
                self._writing = False
                self._group.notify_all()
        return mine.answer()

    def _record(self, group: list[_Accept]) -> None:
        """Insert the group's new request ids in one fsynced transaction."""
        ids = [accept.request.request_id for accept in group]
        fresh: dict[str, _Accept] = {}
        try:
            fresh = self._insert_new(group, ids)
        except sa.exc.IntegrityError as exc:
            # Another process recorded one of these ids since our SELECT.
            if len(group) > 1:
                for accept in group:
                    self._record([accept])
                return
            fresh.clear()
            if self.get(ids[0]) is None:
                group[0].finish(error=exc)
                return
        except Exception as exc:
            for accept in group:
                accept.finish(error=exc)
            return
        for accept in group:
            if fresh.get(accept.request.request_id) is accept:
                accept.finish(answer=(True, RequestRecord(
                    accept.request, schema.ACCEPTED, None, None, None,
                    accept.row["received_at"], None)))
            else:
                earlier = self.get(accept.request.request_id)
                assert earlier is not None, "a known request id has its row"
                accept.finish(answer=(False, earlier))

    def _insert_new(self, group: list[_Accept], ids: list[str]) -> dict[str, _Accept]:
        fresh: dict[str, _Accept] = {}
        with self._fsynced() as connection:
            known = set(connection.execute(_KNOWN, {"ids": ids}).scalars())
            for accept in group:
                if accept.request.request_id not in known:
                    fresh.setdefault(accept.request.request_id, accept)
            if fresh:
                connection.execute(_INSERT, [accept.row for accept in fresh.values()])
        return fresh

    def ping(self) -> None:
        """A write that changes nothing; raises while the database cannot write.

        A read would not do: SQLite reads while another process holds the
        write lock, and a full disk still reads.
        """
        with self.engine.begin() as connection:
            connection.execute(_PING)

    def get(self, request_id: str) -> RequestRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(_GET, {"_request_id": request_id}).first()
        return RequestRecord.from_row(row) if row else None

    def new_flow_detail(self, request_id: str,
                        kind: str) -> tuple[models.LogBook, models.FlowDetail]:
        """A fresh flow detail for one flow of this request, saved in its logbook."""
        record = self.get(request_id)
        assert record is not None, f"request {request_id} was never accepted"
        with contextlib.closing(self.backend.get_connection()) as connection:
            if record.book_uuid:
                book = connection.get_logbook(record.book_uuid)
            else:
                book = models.LogBook(request_id)
            detail = models.FlowDetail(kind, uuid=str(uuid.uuid4()))
            detail.meta = {"kind": kind, "request_id": request_id,
                           "sequence": len(list(book))}
            book.add(detail)
            connection.save_logbook(book)
        with self.engine.begin() as connection:
            connection.execute(_UPDATE, {"_request_id": request_id,
                                         "book_uuid": book.uuid, "state": schema.RUNNING})
        return book, detail

    def last_flow(
            self, record: RequestRecord) -> tuple[models.LogBook, models.FlowDetail] | None:
        """The last flow that began to run for this request, finished or not."""
        book, started = self._started_flows(record)
        return (book, started[-1]) if started else None

    def _started_flows(
            self, record: RequestRecord) -> tuple[Any, list[models.FlowDetail]]:
        if not record.book_uuid:
            return None, []
        with contextlib.closing(self.backend.get_connection()) as connection:
            book = connection.get_logbook(record.book_uuid)
        return book, _started(book)

    def finish(self, result: Result, quarantine_reason: str | None = None,
               instance_state: str | None = None) -> None:
        """Record the request's end; with a reason, quarantine its instance in
        the same transaction (a revert failed). ``instance_state`` (the state
        machine's state after the request) is kept beside the result, for
        ``rescue-flow status``; Result.from_dict ignores it."""
        stored = result.to_dict()
        if instance_state is not None:
            stored["instance_state"] = instance_state
        with self.engine.begin() as connection:
            connection.execute(_UPDATE, {
                "_request_id": result.request_id, "state": schema.FINISHED,
                "outcome": result.outcome.value, "result": json.dumps(stored),
                "finished_at": utcnow()})
            if quarantine_reason is not None:
                quarantine.record(connection, result.instance_uuid, result.host,
                                  quarantine_reason, result.request_id)

    def unfinished(self) -> list[RequestRecord]:
        """This host's requests that were accepted but never finished, oldest first."""
        query = (_table.select()
                 .where(_table.c.host == self.host, _table.c.state != schema.FINISHED)
                 .order_by(_table.c.received_at))
        with self.engine.connect() as connection:
            return [RequestRecord.from_row(row) for row in connection.execute(query)]

    def recent(self, instance_uuid: str | None = None,
               limit: int = 20) -> list[RequestRecord]:
        query = _table.select().order_by(_table.c.received_at.desc()).limit(limit)
        if instance_uuid:
            query = query.where(_table.c.instance_uuid == instance_uuid)
        with self.engine.connect() as connection:
            return [RequestRecord.from_row(row) for row in connection.execute(query)]

    def steps(self, record: RequestRecord) -> list[tuple[str, str, str]]:
        """(flow, step, state) of every step TaskFlow recorded for this request."""
        if not record.book_uuid:
            return []
        with contextlib.closing(self.backend.get_connection()) as connection:
            book = connection.get_logbook(record.book_uuid)
        details = _started(book)
        created = self._atoms_created([detail.uuid for detail in details])
        return [(detail.name, atom.name, atom.state)
                for detail in details
                for atom in sorted(detail, key=lambda atom: created.get(atom.uuid) or _LAST)
                if not atom.name.startswith("_")]

    def _atoms_created(self, flow_uuids: list[str]) -> dict[str, datetime.datetime]:
        # TaskFlow loads a flow's steps in whatever order the database returns
        # its rows; PostgreSQL moves a row on every update, so the first step
        # came back last. Steps are created in flow order, one insert each.
        query = sa.select(_atomdetails.c.uuid, _atomdetails.c.created_at).where(
            _atomdetails.c.parent_uuid.in_(flow_uuids))
        with self.engine.connect() as connection:
            return {row.uuid: row.created_at for row in connection.execute(query)}

    def purge(self, older_than: datetime.timedelta) -> int:
        """Forget finished requests older than ``older_than``; returns how many."""
        cutoff = utcnow() - older_than
        query = _table.select().where(_table.c.state == schema.FINISHED,
                                      _table.c.finished_at < cutoff)
        with self.engine.connect() as connection:
            rows = list(connection.execute(query))
        with contextlib.closing(self.backend.get_connection()) as connection:
            for row in rows:
                if row.book_uuid:
                    with contextlib.suppress(tf_exc.NotFound):  # already gone is fine
                        connection.destroy_logbook(row.book_uuid)
        with self.engine.begin() as connection:
            for row in rows:
                connection.execute(
                    _table.delete().where(_table.c.request_id == row.request_id))
        return len(rows)
