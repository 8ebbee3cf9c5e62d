"""Whether this host's nova-compute runs rescue-flow's Nova driver.

Nova emits ``instance.rescue.start`` before it calls its compute driver.
Where the driver is rescue-flow's (``rescue_flow_nova``), the driver's own
request carries what the notification lacks (the shutdown timeout, the image
metadata, the deadlines), so the worker must run the driver's request and
never a flow started by the notification. The driver says it is there: it
sends ``rescue_flow.driver.hello`` to this host's queue when nova-compute
starts and again well before the announcement's ``valid_for`` runs out
(docs/protocol.md). No option to set, none to forget: a host whose driver
stops announcing itself goes back to notification-driven flows once the
last announcement expires.

The announcement is kept in the history database, so a restarted worker
knows at once. Both paths name a Nova action with the same request id
(:func:`rescue_flow.requests.nova_action_request_id`): even if a
notification were routed before the first announcement arrived, the
driver's request would be a duplicate of it and get that one flow's result.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from rescue_flow import exceptions
from rescue_flow.messaging.bus import DRIVER_HELLO_EVENT, check_host_name
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import utcnow

LOG = logging.getLogger(__name__)

_table = schema.nova_drivers_table
# A driver announcing itself for longer than a week would outlive its own
# uninstallation by that long; anything up to it is accepted.
MAX_VALID_FOR = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class DriverHello:
    """One announcement: ``driver`` on ``host`` speaks ``protocol`` for ``valid_for`` s."""

    host: str
    driver: str
    protocol: int
    valid_for: int

    @classmethod
    def from_message(cls, message: Mapping[str, Any], host: str) -> DriverHello:
        """The announcement in a message from ``host``'s queue; InvalidRequest if malformed."""
        if message.get("event_type") != DRIVER_HELLO_EVENT:
            raise exceptions.InvalidRequest(
                f"not a driver announcement: {message.get('event_type')!r}")
        payload = message.get("payload")
        if not isinstance(payload, dict):
            raise exceptions.InvalidRequest("driver announcement payload must be an object")
        hello_host = check_host_name(payload.get("host"))
        if hello_host != host:
            raise exceptions.InvalidRequest(
                f"driver announcement is for host {hello_host!r}, this worker serves "
                f"{host!r}")
        driver = payload.get("driver")
        if not isinstance(driver, str) or not driver:
            raise exceptions.InvalidRequest("driver announcement has no driver name")
        protocol, valid_for = (_positive(payload, name) for name in ("protocol", "valid_for"))
        return cls(hello_host, driver, protocol, min(valid_for, MAX_VALID_FOR))


def _positive(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise exceptions.InvalidRequest(
            f"driver announcement {name} must be a positive whole number, got {value!r}")
    return value


class DriverPresence:
    """This host's last valid driver announcement, kept in the history database."""

    def __init__(self, engine: sa.engine.Engine, host: str,
                 clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self.engine = engine
        self.host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._valid_until: datetime.datetime | None = None
        self._driver: str | None = None
        with engine.connect() as connection:
            row = connection.execute(
                _table.select().where(_table.c.host == host)).first()
        if row is not None:
            self._valid_until, self._driver = row.valid_until, row.driver

    def announce(self, hello: DriverHello) -> None:
        """Record the announcement durably, then act on it."""
        now = self._clock()
        values: dict[str, Any] = {"driver": hello.driver, "protocol": hello.protocol,
                  "announced_at": now,
                  "valid_until": now + datetime.timedelta(seconds=hello.valid_for)}
        with self.engine.begin() as connection:
            updated = connection.execute(
                _table.update().where(_table.c.host == hello.host).values(**values))
            if updated.rowcount == 0:
                connection.execute(_table.insert().values(host=hello.host, **values))
        with self._lock:
            first = self._driver is None or not self._valid(now)
            self._valid_until, self._driver = values["valid_until"], hello.driver
        if first:
            LOG.info("Host %s's nova-compute runs %s (protocol %d): Nova's rescue and "
                     "unrescue notifications are left to it", hello.host, hello.driver,
                     hello.protocol)

    def driver(self) -> str | None:
        """The announced driver while its announcement is valid, else None."""
        with self._lock:
            return self._driver if self._valid(self._clock()) else None

    def _valid(self, now: datetime.datetime) -> bool:
        return self._valid_until is not None and now < self._valid_until
