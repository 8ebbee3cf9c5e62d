"""The request intake: each message from this host's queue recorded in the
history before it is acknowledged (see :mod:`rescue_flow.listener`).

A request id recorded before is not run again; if it finished, its result
is sent again (the first notification may never have gone out). A
request Nova sent while this host's Nova driver announces itself is left
to the driver's own request (:mod:`.driver_presence`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from rescue_flow import exceptions
from rescue_flow.engine import logs
from rescue_flow.messaging import bus, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History
from rescue_flow.service.driver_presence import DriverHello, DriverPresence
from rescue_flow.service.flow_queue import FlowQueue, notify
from rescue_flow.service.metrics import Metrics

LOG = logging.getLogger(__name__)


class RequestIntake:
    """Records each request from this host's queue, then lets its message go."""

    def __init__(self, history: History, flows: FlowQueue, results: protocol.Results,
                 host: str, max_attempts: int, remembered: int = 10000,
                 metrics: Metrics | None = None,
                 presence: DriverPresence | None = None) -> None:
        self.history = history
        self.presence = presence
        self.flows = flows
        self.results = results
        self.host = host
        self.max_attempts = max_attempts
        self.metrics = metrics or flows.metrics
        self._attempts = protocol.BoundedRecord(max(remembered, 1000))
        self.stats = {"received": 0, "accepted": 0, "duplicates": 0, "invalid": 0,
                      "requeued": 0, "gave_up": 0, "left_to_driver": 0}
        self._stats_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1
        if name in _REJECTED:
            self.metrics.rejected(_REJECTED[name])

    def __call__(self, context: Mapping[str, Any], message: Mapping[str, Any]) -> Any:
        fields = _payload_fields(message)
        request_id = fields.get("request_id")
        with logs.request_context(
                request_id if isinstance(request_id, str) else message.get("message_id"),
                fields.get("instance_uuid")):
            self._count("received")
            self.metrics.received(fields.get("source"))
            key = str(message.get("message_id"))
            outcome = protocol.bounded_attempts(
                self._attempts, key, self.max_attempts, lambda: self._accept(message),
                lambda reason: self._give_up(reason, message),
                what=f"Request message {key}")
            if outcome == bus.REQUEUE:
                self._count("requeued")
            return outcome

    def _accept(self, message: Mapping[str, Any]) -> Any:
        try:
            if message.get("event_type") == bus.DRIVER_HELLO_EVENT:
                return self._hello(DriverHello.from_message(message, self.host))
            request, progress = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest as exc:
            self._count("invalid")
            LOG.warning("Message %s is not a valid request: %s",
                        message.get("message_id"), exc)
            fields = _payload_fields(message)
            self.results.invalid(str(exc), self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return bus.HANDLED
        driver = self.presence.driver() if self.presence is not None else None
        if request.source == "nova" and driver is not None:
            # Nova calls its driver right after this event; the driver's
            # request (same request id) is the one to run (driver_presence).
            self._count("left_to_driver")
            LOG.info("Nova's %s of instance %s (Nova request %s) is left to this host's "
                     "Nova driver %s", request.action, request.instance_uuid,
                     request.nova_request_id, driver)
            return bus.HANDLED
        try:
            new, record = self.history.accept(request)
        except exceptions.StorageUnavailable as exc:
            # Not the message's fault: hold it (unacknowledged) until the
            # database answers, instead of spending its delivery attempts.
            self.flows.storage.down(exc)
            if not self.flows.storage.wait_until_up():
                return bus.REQUEUE  # stopping: back to the broker
            return self._accept(message)
        if new:
            self._count("accepted")
            self.flows.submit(request, progress)
            return bus.HANDLED
        self._count("duplicates")
        LOG.info("Request %s was recorded before; not running it again",
                 request.request_id)
        if record.result is not None:
            notify(self.results, Result.from_dict(record.result))
        return bus.HANDLED

    def _hello(self, hello: DriverHello) -> Any:
        if self.presence is None:
            LOG.warning("Ignoring the announcement of Nova driver %s: this intake keeps "
                        "no record of drivers", hello.driver)
        else:
            self.presence.announce(hello)
        return bus.HANDLED

    def _give_up(self, reason: str, message: Mapping[str, Any]) -> None:
        self._count("gave_up")
        try:
            request, _ = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest:
            fields = _payload_fields(message)
            self.results.invalid(reason, self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return
        self.results.result(Result(
            request_id=request.request_id, action=request.action,
            instance_uuid=request.instance_uuid, host=self.host,
            outcome=Outcome.FAILED, reason=reason))


# RequestIntake's counts that are rejections, and their metric's reason.
_REJECTED = {"invalid": "invalid", "duplicates": "duplicate", "gave_up": "gave_up"}


def _payload_fields(message: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = message.get("payload")
    return payload if isinstance(payload, dict) else {}
