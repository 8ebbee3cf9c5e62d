"""TaskFlow's SQLAlchemy persistence, made fast and flat.

TaskFlow's stock backend builds a new ``MetaData`` and table set on every
``get_connection()`` and uses ``NullPool`` on SQLite: ~30 storage
transactions per flow then cost 140-230 ms, and with SQLAlchemy 2.1 the
rebuilt table sets leak megabytes per flow (see FACTS.md; requirements pin
SQLAlchemy below 2.1). Here one ``Connection`` (one table set) is built per
backend and reused, the engine pools its connections, and SQLite runs in WAL
mode with ``synchronous=NORMAL``: a step's state survives a killed process,
and only the acceptance of a request pays for an fsync (see ``history``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import pool as sa_pool
from taskflow.persistence.backends import impl_sqlalchemy

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                  "PRAGMA busy_timeout=30000", "PRAGMA foreign_keys=ON")


def is_sqlite(url: str | sa.engine.URL) -> bool:
    return sa.engine.make_url(url).drivername.startswith("sqlite")


def create_engine(url: str) -> sa.engine.Engine:
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
        engine = sa.create_engine(url, poolclass=sa_pool.QueuePool, pool_size=8,
                                  max_overflow=32,
                                  connect_args={"check_same_thread": False,
                                                "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    return engine


class FastSQLAlchemyBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow's SQL backend with one reusable connection object per backend."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        super().__init__({"connection": str(engine.url)}, engine=engine)
        self._connection: impl_sqlalchemy.Connection | None = None
        self._connection_lock = threading.Lock()

    def get_connection(self) -> impl_sqlalchemy.Connection:
        # TaskFlow closes connections with contextlib.closing(); the stock
        # Connection.close() does nothing, so sharing one is safe: each call
        # on it checks a pooled DB connection out and back in.
        with self._connection_lock:
            if self._connection is None:
                self._connection = super().get_connection()
            return self._connection
