"""Instances a failed revert left for an operator, with the reason.

While an instance is listed here, every request for it is refused with the
reason; only ``rescue-flow reset UUID`` (after the operator has looked at the
host) takes it off the list.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from rescue_flow.jsonstore import JsonDocument


class QuarantineList:
    def __init__(self, path: str) -> None:
        self._document = JsonDocument(path)

    @classmethod
    def from_conf(cls, conf: Any) -> QuarantineList:
        return cls(os.path.join(conf.state_path, "quarantine.json"))

    def get(self, instance_uuid: str) -> dict[str, Any] | None:
        entry = self._document.read().get(instance_uuid)
        return dict(entry) if entry else None

    def add(self, instance_uuid: str, reason: str, request_id: str) -> None:
        entry = {"reason": reason, "request_id": request_id,
                 "since": datetime.datetime.now(datetime.timezone.utc).isoformat()}

        def _add(document: dict[str, Any]) -> None:
            document[instance_uuid] = entry

        self._document.update(_add)

    def remove(self, instance_uuid: str) -> bool:
        """Take the instance off the list; False when it was not on it."""
        return bool(self._document.update(
            lambda document: document.pop(instance_uuid, None) is not None))

    def all(self) -> dict[str, dict[str, Any]]:
        return dict(self._document.read())
