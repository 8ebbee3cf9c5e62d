"""History storage that fails on demand: a locked SQLite file, a PostgreSQL
database that drops and refuses sessions (a restart, without restarting the
shared server), a full disk (simulated: every statement fails with ENOSPC).
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from typing import Any

import sqlalchemy as sa

from rescue_flow import hyperv
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.persistence.history import History

# Short enough for tests: a write waits 0.1 s for SQLite's lock, and storage
# errors are retried for 1.5 s before the request is left for a resume.
FAST = {"storage_retry_timeout": 1.5, "sqlite_busy_timeout": 0.1}


def fast_runner(site: Any) -> FlowRunner:
    """A runner on ``site``'s host and history, with FAST storage retries."""
    for name, value in FAST.items():
        site.conf.set_override(name, value, group="persistence")
    history = History.from_conf(site.conf)
    site.runner = FlowRunner.from_conf(site.conf, hyperv.get_host(site.conf), history)
    return site.runner


class Outage:
    """The history database stops taking writes between start() and end()."""

    def __init__(self, url: str) -> None:
        self.url = sa.engine.make_url(url)
        self._sqlite: sqlite3.Connection | None = None
        self.active = False

    def start(self) -> None:
        self.active = True
        if self.url.drivername.startswith("sqlite"):
            # Another process's write transaction, held: writers get "database
            # is locked" after their busy timeout; readers go on (WAL).
            self._sqlite = sqlite3.connect(self.url.database, timeout=5,
                                           isolation_level=None, check_same_thread=False)
            self._sqlite.execute("BEGIN IMMEDIATE")
            return
        self._postgres(f'ALTER DATABASE "{self.url.database}" ALLOW_CONNECTIONS false',
                       "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{self.url.database}' AND pid <> pg_backend_pid()")

    def end(self) -> None:
        if not self.active:
            return
        self.active = False
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
            return
        self._postgres(f'ALTER DATABASE "{self.url.database}" ALLOW_CONNECTIONS true')

    def end_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.end)
        timer.start()
        return timer

    def _postgres(self, *statements: str) -> None:
        admin = sa.create_engine(self.url.set(database="postgres"),
                                 poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                for statement in statements:
                    connection.exec_driver_sql(statement)
        finally:
            admin.dispose()


class DiskFull:
    """Every statement of ``engine`` fails as on a full disk while on."""

    def __init__(self, engine: sa.engine.Engine, only: str = "") -> None:
        self.active = False
        self.only = only  # fail only statements that contain this
        sa.event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.active and self.only in statement:
            raise sa.exc.OperationalError(statement, None,
                                          OSError(errno.ENOSPC, "No space left on device"))

    def start(self) -> None:
        self.active = True

    def end(self) -> None:
        self.active = False
