"""A notification listener that runs messages in arrival order per key, and
settles (acks or requeues) them only when their handler has finished.

oslo.messaging's own notification server hands messages to a pool of up to
64 threads that may overtake one another, acks what it cannot dispatch,
and, in its rabbit driver, has two habits that cost a request at a restart
(see :class:`_Settlements`). :class:`OrderedListener` keeps the server, its
connection handling and its polling thread, and replaces what happens to a
message once polled. See :mod:`rescue_flow.listener` for the delivery story
as a whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from oslo_messaging.notify import dispatcher as om_dispatcher
from oslo_messaging.notify import listener as om_listener

from rescue_flow.engine.scheduler import KeyedScheduler
from rescue_flow.messaging.bus import REQUEUE

LOG = logging.getLogger(__name__)

# How long closing a listener waits for its last acks to reach the broker.
SETTLE_TIMEOUT = 10.0

Handler = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
KeyOf = Callable[[Mapping[str, Any]], Hashable | None]


class OrderedListener(om_listener.NotificationServer):
    """A notification listener whose messages run in arrival order per key.

    oslo.messaging calls ``_on_incoming`` from its single polling thread, in
    the order the broker delivered the messages; instead of its thread pool,
    the messages go to a :class:`KeyedScheduler` under ``key_of(message)``.
    ``handler(context, message)`` gets the whole notification (message_id,
    publisher_id, event_type, priority, payload, timestamp) and returns
    HANDLED (ack) or REQUEUE; an exception counts as REQUEUE. Every message in
    our queues goes to the handler whatever its priority field says: the
    stock dispatcher would ack one with an unknown priority unseen.

    The message stays unacknowledged until the handler returns. ``stop``
    takes no new message and requeues those that have not started; ``wait``
    lets running handlers finish.
    """

    def __init__(self, transport: Any, targets: list[Any], handler: Handler,
                 key_of: KeyOf, max_workers: int, pool: str | None = None,
                 name: str = "listener") -> None:
        # The dispatcher only tells the driver which priorities to bind (info).
        dispatcher = om_dispatcher.NotificationDispatcher([_InfoOnly()], None)
        super().__init__(transport, targets, dispatcher, allow_requeue=True, pool=pool)
        self._handler = handler
        self._key_of = key_of
        self._max_workers = max_workers
        self._name = name
        self._scheduler: KeyedScheduler | None = None
        self._settlements = _Settlements()

    def _create_listener(self) -> Any:
        # Called by start(). oslo's own thread pool stays idle (its threads
        # are made on first use, and nothing is submitted to it).
        self._scheduler = KeyedScheduler(self._max_workers, name=self._name)
        return _SchedulerStopper(super()._create_listener(), self._scheduler,
                                 self._settlements)

    def _on_incoming(self, incoming: list[Any]) -> None:
        message = incoming[0]
        try:
            key = self._key_of(message.message)
        except Exception:  # a malformed message still needs its handler
            key = None
        if self._scheduler is None or not self._scheduler.submit(
                key, self._process_incoming, incoming):
            self._settlements.requeue(message)  # stopping: for the next consumer

    def _process_incoming(self, incoming: list[Any]) -> None:
        message = incoming[0]
        try:
            result = self._handler(message.ctxt or {}, message.message)
        except Exception:
            LOG.exception("Unexpected error while handling a message; requeueing it")
            result = REQUEUE
        try:
            if result == REQUEUE:
                self._settlements.requeue(message)
            else:
                self._settlements.ack(message)
        except Exception:
            LOG.exception("Could not acknowledge or requeue a message")

    def running_and_waiting(self) -> tuple[int, int]:
        return self._scheduler.counts() if self._scheduler else (0, 0)


class _Settlements:
    """Acks and requeues, handed to the driver's polling thread, and counted.

    Two driver behaviours make us do the driver's job here:

    - It remembers the ids of the last 16 messages it acked and drops any
      redelivery of them *without acking it*. After a broker restart, a copy
      whose first ack died with the connection then stays unacknowledged
      until the worker disconnects, and comes back at its next start,
      possibly behind later requests for the same instance (an old unrescue
      replayed after a newer rescue). Our handlers recognize duplicates
      themselves, so our acks skip that cache.
    - At shutdown it stops its polling thread without running the acks still
      queued for it, so the last finished request would come back. We count
      ours and wait for them before the connection closes.

    kombu is not thread-safe: the operations still run in the driver's
    polling thread, through its queue.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0

    def ack(self, message: Any) -> None:
        self._settle(message, "acknowledge")

    def requeue(self, message: Any) -> None:
        self._settle(message, "requeue")

    def _settle(self, message: Any, operation: str) -> None:
        queue = getattr(message, "_message_operations_handler", None)
        raw = getattr(message, "message", None)
        if queue is None or not callable(getattr(raw, operation, None)):
            getattr(message, operation)()  # another driver: its own way
            return

        def settle() -> None:
            try:
                getattr(raw, operation)()
            except Exception as exc:  # the connection is gone: it comes again
                LOG.warning("Could not %s a message; it will be redelivered: %s",
                            operation, exc)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

        with self._cond:
            self._pending += 1
        queue.do(settle)

    def wait(self, timeout: float) -> bool:
        """Block until every queued ack and requeue has run; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)


class _SchedulerStopper:
    """Wraps the driver's listener so that the server's own stop() and
    wait() (ordered tasks we must not override) also stop the scheduler."""

    def __init__(self, listener: Any, scheduler: KeyedScheduler,
                 settlements: _Settlements) -> None:
        self._listener = listener
        self._scheduler = scheduler
        self._settlements = settlements

    def start(self, on_incoming: Callable[[Any], None]) -> None:
        self._listener.start(on_incoming)

    def stop(self) -> None:
        # Once the driver's listener has stopped, its polling thread has
        # handed over every message it consumed; those not started go back.
        self._listener.stop()
        for job in self._scheduler.shutdown(wait=False):
            self._settlements.requeue(job.args[0][0])

    def cleanup(self) -> None:
        self._scheduler.join()  # running handlers finish first
        if not self._settlements.wait(timeout=SETTLE_TIMEOUT):
            LOG.warning("Some acks were not sent before closing; those messages will "
                        "be redelivered")
        self._listener.cleanup()


class _InfoOnly:
    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> None:  # pragma: no cover - never dispatched
        raise AssertionError("OrderedListener calls its handler directly")
