"""Send a request to a host's worker and, if asked, follow it to its result.

Sending goes through oslo.messaging (:class:`rescue_flow.messaging.protocol.Router`):
the request waits in the host's durable queue until that host's worker takes
it. Following it needs a subscription that exists *before* the request is
sent, or a fast worker's first steps would be missed, and that disappears
with the client, even a killed one. An oslo.messaging listener can give
neither (its pool queue is durable like our exchange and outlives the
client), so :class:`ResultWatcher` declares, through kombu, an exclusive
auto-delete queue bound to the results topic, and picks out its request id.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import kombu

from rescue_flow.engine.progress import StepEvent
from rescue_flow.messaging import bus, protocol
from rescue_flow.outcome import Result
from rescue_flow.requests import Request


class WaitTimedOut(Exception):
    """No result arrived within the timeout; the request may still run later."""


class WatchLost(Exception):
    """The connection to the broker dropped while waiting for a result."""


def new_request_id() -> str:
    return f"client-{uuid.uuid4()}"


def results_queue(conf: Any, name_prefix: str) -> tuple[kombu.Connection, kombu.Queue]:
    """A connection and an exclusive, auto-deleted queue bound to every result and step.

    Nothing is declared until a consumer uses the queue; declare it before
    sending anything whose results must not be missed.
    """
    topic = conf.worker.results_topic
    # Declared exactly as oslo.messaging declares it for rescue_transport.
    exchange = kombu.Exchange(conf.worker.exchange, type="topic", durable=True,
                              auto_delete=False)
    queue = kombu.Queue(
        f"{name_prefix}-{uuid.uuid4().hex}", exclusive=True, auto_delete=True,
        bindings=[kombu.binding(exchange, routing_key=f"{topic}.{priority}")
                  for priority in ("info", "error")])
    url = bus.kombu_url(conf)
    # kombu's in-memory transport polls, once a second by default.
    options = {"polling_interval": 0.01} if url.startswith("memory:") else {}
    connection = kombu.Connection(url, ssl=bus.kombu_ssl(conf), connect_timeout=10,
                                  transport_options=options)
    return connection, queue


class ResultWatcher:
    """An exclusive, auto-deleted queue that receives every result and step."""

    def __init__(self, conf: Any) -> None:
        self._connection, self._queue = results_queue(conf, "rescue-flow-wait")
        self._messages: list[dict[str, Any]] = []
        self._consumer: kombu.Consumer | None = None

    def __enter__(self) -> ResultWatcher:
        self._connection.ensure_connection(max_retries=3)
        self._consumer = kombu.Consumer(self._connection.channel(), queues=[self._queue],
                                        callbacks=[self._on_message], no_ack=True,
                                        accept=["json"])
        self._consumer.consume()  # declares and binds the queue: subscribed from here
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._connection.release()

    def _on_message(self, body: Any, message: Any) -> None:
        # Not ours to judge what else travels on the shared results topic.
        with contextlib.suppress(bus.InvalidMessage):
            self._messages.append(bus.unwrap(body))

    def wait(self, request_id: str, timeout: float,
             on_step: Callable[[StepEvent], None] | None = None) -> Result:
        """Report the request's steps as they come; return its result."""
        deadline = time.monotonic() + timeout
        while True:
            while self._messages:
                message = self._messages.pop(0)
                payload = message.get("payload")
                if not isinstance(payload, dict) or payload.get("request_id") != request_id:
                    continue
                if message.get("event_type") == bus.STEP_EVENT:
                    if on_step is not None:
                        on_step(StepEvent(payload["flow"], payload["step"], payload["state"],
                                          payload.get("seconds")))
                    continue
                return Result.from_dict(payload)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimedOut(f"no result for request {request_id} after {timeout:g}s")
            try:
                self._connection.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                continue
            except self._connection.connection_errors as exc:
                raise WatchLost(f"lost the broker while waiting: {exc}") from exc


class Client:
    """Sends requests; ``submit`` follows one to its result when asked."""

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        self.transport = bus.rescue_transport(conf)
        publisher = bus.Publisher(self.transport, conf.worker.exchange,
                                        f"rescue-flow-client:{socket.gethostname()}")
        self.router = protocol.Router(publisher, conf.worker.requests_topic)

    def send(self, request: Request, progress: bool = False, retry: int | None = 3) -> None:
        """Queue the request for its host; raises if the broker did not take it."""
        self.router.send(request, progress=progress, retry=retry)

    def submit(self, request: Request, wait: bool = False, timeout: float = 600.0,
               on_step: Callable[[StepEvent], None] | None = None) -> Result | None:
        if not wait:
            self.send(request)
            return None
        with ResultWatcher(self.conf) as watcher:
            self.send(request, progress=True)
            return watcher.wait(request.request_id, timeout, on_step)

    def close(self) -> None:
        self.transport.cleanup()
