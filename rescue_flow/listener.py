"""The message listeners of a worker, and how a request travels through them.

How a request travels, and when each message is acknowledged
=============================================================

1. Nova publishes ``instance.rescue.start`` (and the other events in
   :mod:`rescue_flow.messaging.nova`) on its exchange ``[nova] exchange``, topics
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
   Nova's request id (see :mod:`rescue_flow.messaging.nova`), so the worker runs it once.
   (Not an RPC cast: the RPC server acks before it runs the method, and a cast
   to a queue nobody declared yet is dropped.)
3. The host's worker (:mod:`rescue_flow.service.worker`) takes the request from its
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
that may overtake one another;
:class:`rescue_flow.messaging.ordered_listener.OrderedListener` instead
queues messages per instance, in the order the broker delivered them.
A requeued message comes back behind those already delivered, so a retry
may run after a later request for the same instance.

Holding messages unacknowledged: a message is held only while it is
recorded (the worker) or routed (the intake), which takes milliseconds, so
RabbitMQ's ``consumer_timeout`` (30 minutes by default) is not reached
however long flows run; requests waiting for a flow wait in the history,
not in the broker. Messages wait behind one another only per instance, in
arrival order.

Two habits of the rabbit driver are worked around in
:class:`rescue_flow.messaging.ordered_listener._Settlements`: it drops,
without acking, a redelivery of any of the last 16 messages it acked, and
it closes the connection without sending the acks still queued at shutdown.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging

from rescue_flow.messaging import protocol
from rescue_flow.messaging.nova_intake import NovaIntake, nova_key
from rescue_flow.messaging.ordered_listener import Handler, OrderedListener

# Routing takes milliseconds: a few threads are plenty.
INTAKE_THREADS = 4


def nova_listener(conf: Any, transport: Any, router: protocol.Router,
                  results: protocol.Results) -> OrderedListener:
    """The listener on Nova's exchange, sharing ``[nova] pool`` with every worker."""
    targets = [oslo_messaging.Target(exchange=conf.nova.exchange, topic=topic)
               for topic in conf.nova.topics]
    handler = NovaIntake(router, results, conf.host,
                         max_attempts=conf.worker.max_delivery_attempts,
                         hosts=conf.nova.hosts)
    return OrderedListener(transport, targets, handler, nova_key,
                           max_workers=INTAKE_THREADS, pool=conf.nova.pool,
                           name="intake")


def request_listener(conf: Any, transport: Any, host: str,
                     handler: Handler) -> OrderedListener:
    """The listener on this host's own request queue."""
    target = oslo_messaging.Target(
        exchange=conf.worker.exchange,
        topic=protocol.request_topic(conf.worker.requests_topic, host))
    # Recording is quick; the flows run in the worker's flow queue, not in
    # these threads.
    return OrderedListener(transport, [target], handler, protocol.instance_key,
                           max_workers=conf.worker.max_concurrent_flows, name="intake")
