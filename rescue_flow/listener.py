"""Intake: Nova's rescue and unrescue notifications, routed to each host's queue.

How a request travels, and when each message is acknowledged
=============================================================

1. Nova publishes ``instance.rescue.start`` (and the other events in
   :mod:`rescue_flow.nova`) on its exchange ``[nova] exchange``, topics
   ``[nova] topics``, priority INFO. Every worker runs a :class:`NovaIntake`
   listening with ``pool=[nova] pool``: all workers share that one queue,
   so each event is taken once, by whichever worker RabbitMQ gives it to.
   The queue is declared with Nova's durability (``[nova]
   amqp_durable_queues``); RabbitMQ refuses any other.
2. The intake parses the event into a :class:`Request` and publishes it on
   our own durable exchange, topic ``<requests_topic>.<host>``. oslo.messaging
   declares that host's durable queue when it publishes, so the request waits
   there, persistent, while the host's worker is down or the broker restarts.
   Only after the broker confirmed the publish does the intake return, and
   only then is the Nova event acknowledged. A crash in between means the
   event comes again and is routed twice: the request id is derived from
   Nova's request id (see :mod:`rescue_flow.nova`), so the worker runs it once.
   (Not an RPC cast: the RPC server acks before it runs the method, and a cast
   to a queue nobody declared yet is dropped.)
3. The host's worker (:mod:`rescue_flow.worker`) takes the request from its
   queue, records it durably in its history, and only then acknowledges it;
   the flow runs afterwards, from the history. A crash before the record
   means redelivery; after it, the worker resumes the request at its next
   start. A redelivered request id found in the history is acknowledged
   without running again (and its result, if any, is sent again).

Failures, in the intake and in the worker alike:

- Bad input (not JSON, not an object, wrong types, missing fields, ids that
  are not UUIDs, an impossible host name): one warning line saying what is
  wrong, an error notification (``rescue_flow.<action>.error``, or
  ``rescue_flow.request.error``), then acknowledged: retrying cannot help.
  A body that is not JSON at all never reaches us: oslo.messaging's rabbit
  driver rejects it (without requeue) and logs "Failed to process message
  ... skipping it."; no request id or instance could be named anyway.
- An unexpected exception: the message is requeued, up to
  ``[worker] max_delivery_attempts`` deliveries counted per message in this
  process, then answered with an error notification and acknowledged. With
  ``allow_requeue=True`` and no bound, a message that always fails would come
  back hundreds of times a second, forever. (With several workers sharing the
  intake queue, each counts its own deliveries.)
- Events that are not rescue/unrescue starts, and events for hosts outside
  ``[nova] hosts``: acknowledged and ignored.

Ordering: oslo.messaging's own executor runs handlers on a pool of threads
that may overtake one another; :class:`rescue_flow.consumer.OrderedListener`
instead queues messages per instance, in the order the broker delivered them.
A requeued message comes back behind those already delivered, so a retry
may run after a later request for the same instance.

Holding messages unacknowledged: a message is held only while it is
recorded (the worker) or routed (the intake), which takes milliseconds, so
RabbitMQ's ``consumer_timeout`` (30 minutes by default) is not reached
however long flows run; requests waiting for a flow wait in the history,
not in the broker. Messages wait behind one another only per instance, in
arrival order.

Two habits of the rabbit driver are worked around in
:class:`rescue_flow.consumer._Settlements`: it drops, without acking, a
redelivery of any of the last 16 messages it acked, and it closes the
connection without sending the acks still queued at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import oslo_messaging

from rescue_flow import consumer, exceptions, logs, messaging, nova, protocol

LOG = logging.getLogger(__name__)

# Routing takes milliseconds: a few threads are plenty.
INTAKE_THREADS = 4


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
            return messaging.HANDLED  # one of Nova's many other events
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
        return messaging.HANDLED

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


def build_intake(conf: Any, transport: Any, router: protocol.Router,
                 results: protocol.Results) -> consumer.OrderedListener:
    """The listener on Nova's exchange, sharing ``[nova] pool`` with every worker."""
    targets = [oslo_messaging.Target(exchange=conf.nova.exchange, topic=topic)
               for topic in conf.nova.topics]
    handler = NovaIntake(router, results, conf.host,
                         max_attempts=conf.worker.max_delivery_attempts,
                         hosts=conf.nova.hosts)
    return consumer.OrderedListener(transport, targets, handler, nova_key,
                                    max_workers=INTAKE_THREADS, pool=conf.nova.pool,
                                    name="intake")
