"""Record: a request in the history before anything happens, its end after.

The history is what makes a request run once: a request id accepted before
is answered as a duplicate, and a request's end is written with the
instance's state after it (shown by ``rescue-flow status``). A failed
revert quarantines the instance in the same transaction as the end, so no
crash can record one without the other. Without a history (unit tests,
benchmarks in memory) nothing is recorded, and the quarantine list is kept
in memory.
"""

from __future__ import annotations

from rescue_flow import exceptions, requests
from rescue_flow.engine.quarantine import MemoryQuarantine, QuarantineList
from rescue_flow.engine.report import Quarantining
from rescue_flow.outcome import Result
from rescue_flow.persistence.history import History, RequestRecord


class Recorder:
    def __init__(self, history: History | None,
                 quarantine: QuarantineList | MemoryQuarantine) -> None:
        self.history = history
        self.quarantine = quarantine

    def accept(self, request: requests.Request) -> RequestRecord | None:
        """Record the request; the earlier record if its id was accepted before."""
        if self.history is None:
            return None
        try:
            new, record = self.history.accept(request)
        except exceptions.StorageUnavailable as exc:
            exc.recorded = False
            raise
        return None if new else record

    def finish(self, result: Result, instance_state: str | None = None) -> Result:
        """Record the end; a revert failure quarantines in the same transaction."""
        reason = result.reason if isinstance(result, Quarantining) else None
        if self.history is not None:
            self.history.finish(result, quarantine_reason=reason,
                                instance_state=instance_state)
        elif reason is not None:
            self.quarantine.add(result.instance_uuid, reason, result.request_id)
        return result
