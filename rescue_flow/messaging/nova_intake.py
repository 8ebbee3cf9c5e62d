"""Nova's rescue and unrescue notifications in, routed to each host's queue.

:class:`NovaIntake` handles one notification taken from Nova's exchange, in
one direction: recognise the event, parse and validate it into a Request
(:mod:`rescue_flow.messaging.nova`), then route it (:class:`Router`). The
listener that feeds it, and when its messages are acknowledged, are in
:mod:`rescue_flow.listener`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rescue_flow import exceptions
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
        action = nova.action_of(message.get("event_type"))
        if action is None:
            return bus.HANDLED  # one of Nova's many other events
        # Nova's own request id, the one nova-compute's log lines show.
        with logs.request_context(context.get("request_id"), nova.instance_uuid_of(message)):
            return protocol.bounded_attempts(
                self._attempts, str(message.get("message_id")), self.max_attempts,
                lambda: self._handle(context, message, action),
                lambda reason: self._invalid(reason, message, action),
                what=f"Nova notification {message.get('message_id')}")

    def _handle(self, context: Mapping[str, Any], message: Mapping[str, Any],
                action: str) -> Any:
        try:
            self._route(context, message, action)
        except exceptions.InvalidRequest as exc:
            LOG.warning("Nova %s notification %s is not a valid request: %s",
                        message.get("event_type"), message.get("message_id"), exc)
            self._invalid(str(exc), message, action)
        return bus.HANDLED

    def _route(self, context: Mapping[str, Any], message: Mapping[str, Any],
               action: str) -> None:
        request = nova.parse(message, context)
        assert request is not None and request.host is not None  # action is known
        if self.hosts and request.host not in self.hosts:
            LOG.info("Ignoring %s of instance %s: host %s is not in [nova] hosts",
                     action, request.instance_uuid, request.host)
            return
        self.router.send(request)
        LOG.info("Routed %s of instance %s to host %s (request %s)", action,
                 request.instance_uuid, request.host, request.request_id)

    def _invalid(self, reason: str, message: Mapping[str, Any], action: str) -> None:
        # Name what can be named: a reader of the error wants the instance.
        self.results.invalid(reason, self.host, action=action,
                             request_id=message.get("message_id"),
                             instance_uuid=nova.instance_uuid_of(message))


def nova_key(message: Mapping[str, Any]) -> str | None:
    return nova.instance_uuid_of(message)

