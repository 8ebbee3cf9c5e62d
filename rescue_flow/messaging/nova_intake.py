"""Nova's rescue and unrescue notifications in, routed to each host's queue.

:class:`NovaIntake` handles one notification taken from Nova's exchange, in
one direction and each step once: the event is read
(:func:`rescue_flow.messaging.nova.read`: recognised, parsed, validated,
turned into a Request), then routed (:class:`protocol.Router`). The listener
that feeds it, and when its messages are acknowledged, are in
:mod:`rescue_flow.listener`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rescue_flow.engine import logs
from rescue_flow.messaging import bus, nova, protocol

LOG = logging.getLogger(__name__)


class NovaIntake:
    """Handles one Nova notification: ignore, route, or answer with an error."""

    def __init__(self, router: protocol.Router, results: protocol.Results, host: str,
                 max_attempts: int, hosts: list[str] | None = None,
                 attempts_remembered: int = 10000) -> None:
        self.router = router
        self.results = results
        self.host = host
        self.max_attempts = max_attempts
        self.hosts = set(hosts or [])
        self._attempts = protocol.BoundedRecord(attempts_remembered)

    def __call__(self, context: Mapping[str, Any], message: Mapping[str, Any]) -> Any:
        event = nova.read(message, context)
        if event.action is None:
            return bus.HANDLED  # one of Nova's many other events
        # Nova's own request id, the one nova-compute's log lines show.
        with logs.request_context(event.nova_request_id, event.instance_uuid):
            # Only routing can fail for a while (the broker away): bounded retries.
            return protocol.bounded_attempts(
                self._attempts, str(event.message_id), self.max_attempts,
                lambda: self._route(event), lambda reason: self._invalid(reason, event),
                what=f"Nova notification {event.message_id}")

    def _route(self, event: nova.NovaEvent) -> Any:
        if event.request is None:
            LOG.warning("Nova %s notification %s is not a valid request: %s",
                        event.event_type, event.message_id, event.error)
            self._invalid(str(event.error), event)
            return bus.HANDLED
        request = event.request
        if self.hosts and request.host not in self.hosts:
            LOG.info("Ignoring %s of instance %s: host %s is not in [nova] hosts",
                     request.action, request.instance_uuid, request.host)
            return bus.HANDLED
        self.router.send(request)
        LOG.info("Routed %s of instance %s to host %s (request %s)", request.action,
                 request.instance_uuid, request.host, request.request_id)
        return bus.HANDLED

    def _invalid(self, reason: str, event: nova.NovaEvent) -> None:
        # Name what can be named: a reader of the error wants the instance.
        self.results.invalid(reason, self.host, action=event.action,
                             request_id=event.message_id,
                             instance_uuid=event.instance_uuid)


def nova_key(message: Mapping[str, Any]) -> str | None:
    return nova.instance_uuid_of(message)
