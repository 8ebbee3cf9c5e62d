"""Instances a failed revert left for an operator, with the reason.

While an instance is listed here, every request for it is refused with the
reason; only ``rescue-flow reset UUID`` (after the operator has looked at the
host) takes it off the list.

The list lives in the history database (:mod:`rescue_flow.persistence.quarantine`),
and an instance is put on it in the transaction that records the request's
end. A runner without a history (unit tests, benchmarks in memory) keeps
it in memory.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from rescue_flow.persistence import quarantine as rows
from rescue_flow.persistence.history import History


class QuarantineList:
    """The quarantine rows of one history database."""

    def __init__(self, history: History) -> None:
        self.history = history

    @classmethod
    def from_conf(cls, conf: Any) -> QuarantineList:
        return cls(History.from_conf(conf))

    def get(self, instance_uuid: str) -> dict[str, Any] | None:
        """Retried like every history read (StorageUnavailable after the timeout)."""
        return self.history.retry(rows.get)(self.history.engine, instance_uuid)

    def add(self, instance_uuid: str, reason: str, request_id: str) -> None:
        """Quarantine on its own; a runner does it with the request's end instead."""
        with self.history.engine.begin() as connection:
            rows.record(connection, instance_uuid, self.history.host, reason, request_id)

    def remove(self, instance_uuid: str) -> bool:
        """Take the instance off the list; False when it was not on it."""
        return rows.remove(self.history.engine, instance_uuid)

    def all(self) -> dict[str, dict[str, Any]]:
        return rows.all_entries(self.history.engine)

    def count(self) -> int:
        return rows.count(self.history.engine)


class MemoryQuarantine:
    """The same list, for a runner that records nothing."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, instance_uuid: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(instance_uuid)
            return dict(entry) if entry else None

    def add(self, instance_uuid: str, reason: str, request_id: str) -> None:
        since = datetime.datetime.now(datetime.timezone.utc).isoformat()
        with self._lock:
            self._entries[instance_uuid] = {"reason": reason, "request_id": request_id,
                                            "since": since}

    def remove(self, instance_uuid: str) -> bool:
        with self._lock:
            return self._entries.pop(instance_uuid, None) is not None

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: dict(value) for key, value in self._entries.items()}

    def count(self) -> int:
        with self._lock:
            return len(self._entries)
