"""The quarantine rows of the history database, read and written.

Quarantine used to be a JSON file in ``[DEFAULT] state_path``
(``quarantine.json``), written after the request's final state, apart from
it: when that write failed (a full disk; on Windows a scanner holding the
file open), the request stayed unfinished and a later resume ran a fresh
flow on the host the failed revert had left broken. Now the row is written
in the transaction that finishes the request (:meth:`History.finish`).

An existing ``quarantine.json`` is imported once, when a history is opened
for its host (:func:`import_file`), and a marker row records that it was:
the file is then left alone (neither read again nor removed), so a reset
done afterwards is not undone by the old file.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any

import sqlalchemy as sa

from rescue_flow import exceptions
from rescue_flow.persistence import schema

LOG = logging.getLogger(__name__)

_table = schema.quarantine_table
_markers = schema.markers_table


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def entry(row: Any) -> dict[str, Any]:
    """A row as 'rescue-flow quarantined --json' shows it (the old file's shape)."""
    return {"reason": row.reason, "request_id": row.request_id, "host": row.host,
            "since": row.since.replace(tzinfo=datetime.timezone.utc).isoformat()}


def record(connection: sa.engine.Connection, instance_uuid: str, host: str,
           reason: str, request_id: str, since: datetime.datetime | None = None) -> None:
    """Quarantine the instance (again: the newest reason wins), in ``connection``'s
    transaction."""
    values = {"host": host, "reason": reason, "request_id": request_id,
              "since": since or _utcnow()}
    updated = connection.execute(
        _table.update().where(_table.c.instance_uuid == instance_uuid), values)
    if updated.rowcount == 0:
        connection.execute(_table.insert(), {"instance_uuid": instance_uuid, **values})


def get(engine: sa.engine.Engine, instance_uuid: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(
            _table.select().where(_table.c.instance_uuid == instance_uuid)).first()
    return entry(row) if row else None


def all_entries(engine: sa.engine.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(_table.select().order_by(_table.c.instance_uuid))
        return {row.instance_uuid: entry(row) for row in rows}


def count(engine: sa.engine.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(
            sa.select(sa.func.count()).select_from(_table)).scalar_one())


def remove(engine: sa.engine.Engine, instance_uuid: str) -> bool:
    with engine.begin() as connection:
        deleted = connection.execute(
            _table.delete().where(_table.c.instance_uuid == instance_uuid))
    return bool(deleted.rowcount)


def import_file(engine: sa.engine.Engine, path: str, host: str) -> int:
    """Import ``quarantine.json`` once per host; returns the entries imported.

    The marker and the entries commit together: an import cut short is
    simply done again at the next start. Entries already in the database
    (the same instance quarantined since) are kept as they are.
    """
    marker = f"quarantine.json imported for host {host}"
    if not os.path.exists(path):
        return 0
    with engine.connect() as connection:
        done = connection.execute(
            sa.select(_markers.c.name).where(_markers.c.name == marker)).first()
    if done is not None:
        return 0
    document = _read_old_file(path)
    try:
        imported = _import(engine, document, host, marker, path)
    except sa.exc.IntegrityError:
        return 0  # another process of this host imported it meanwhile
    LOG.info("Imported %d quarantined instance(s) from %s into the history; the file "
             "is no longer read", imported, path)
    return imported


def _read_old_file(path: str) -> dict[str, Any]:
    """The old quarantine list, or QuarantineFileCorrupt naming the file: its
    instances must not be forgotten because it could not be read."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        document = json.loads(raw.decode("utf-8") or "{}")
    except ValueError as exc:
        document = exc
    if not isinstance(document, dict) or not all(
            isinstance(entry, dict) for entry in document.values()):
        raise exceptions.QuarantineFileCorrupt(
            f"the quarantine list of an earlier release, {path}, cannot be read "
            f"({document if isinstance(document, ValueError) else 'not a JSON object of entries'}):"
            f" repair it (instance uuid -> {{reason, request_id, since}}) or move it aside "
            f"after quarantining its instances by hand; it is imported once, then left alone")
    return document


def _import(engine: sa.engine.Engine, document: dict[str, Any], host: str, marker: str,
            path: str) -> int:
    imported = 0
    with engine.begin() as connection:
        known = set(connection.execute(sa.select(_table.c.instance_uuid)).scalars())
        for instance_uuid, old in sorted(document.items()):
            if instance_uuid in known:
                continue
            since = _parse_time(old.get("since"))
            record(connection, instance_uuid, host, str(old.get("reason", "")),
                   str(old.get("request_id", "")), since)
            imported += 1
        connection.execute(_markers.insert(), {"name": marker, "value": path,
                                               "created_at": _utcnow()})
    return imported


def _parse_time(text: Any) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return _utcnow()
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment
