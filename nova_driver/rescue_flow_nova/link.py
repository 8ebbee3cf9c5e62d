"""The driver's line to this host's rescue-flow worker, over RabbitMQ (kombu).

One call = one short-lived connection: declare an exclusive, auto-deleted
queue bound to the results topic *before* sending, so no result can be
missed; check that the worker is there (its request queue has a consumer),
else fail at once without sending anything; publish the request with
publisher confirms, so it is on the broker (and, the queue being durable and
the message persistent, survives a broker restart) when ``call`` moves on;
then wait for the result with the request's id.

Why kombu and not oslo.messaging: the worker's requests travel as
notifications on a durable per-host queue (at-least-once, waits for a down
worker), and oslo.messaging offers no public way to send a notification and
learn whether the broker took it (its Notifier logs and drops failures), nor
a private, vanishing subscription for the answer. Under nova-compute's
eventlet, kombu's sockets are green like oslo.messaging's own.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import kombu
import oslo_messaging
from amqp import exceptions as amqp_exc
from kombu import exceptions as kombu_exc

from rescue_flow_nova import protocol

LOG = logging.getLogger(__name__)


class WorkerUnavailable(Exception):
    """No rescue-flow worker takes this host's requests; nothing was sent."""


class WorkerTimedOut(Exception):
    """The worker did not report within the driver's timeout."""


def kombu_url(conf: Any, transport_url: str | None) -> str:
    """An oslo.messaging URL as kombu URLs (several hosts joined with ';')."""
    url = oslo_messaging.TransportURL.parse(conf, transport_url)
    scheme = url.transport.replace("kombu+", "").replace("rabbit", "amqp")
    urls = []
    for host in url.hosts:
        auth = quote(host.username or "", safe="")
        if host.password:
            auth += ":" + quote(host.password, safe="")
        urls.append(f"{scheme}://{auth + '@' if auth else ''}{host.hostname}:"
                    f"{host.port or 5672}/{quote(url.virtual_host or '', safe='')}")
    return ";".join(urls) or f"{scheme}://guest:guest@localhost:5672/"


class WorkerLink:
    """Sends this host's requests and announcements, and waits for results."""

    def __init__(self, url: str, exchange: str, requests_topic: str, results_topic: str,
                 host: str, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.host = host
        self.results_topic = results_topic
        self.request_key = f"{protocol.request_topic(requests_topic, host)}.info"
        # Declared exactly as the worker's oslo.messaging transport declares it.
        self.exchange = kombu.Exchange(exchange, type="topic", durable=True,
                                       auto_delete=False)
        self.connect_timeout = connect_timeout
        self.publisher_id = f"rescue-flow-nova:{host}"

    def _connection(self) -> kombu.Connection:
        return kombu.Connection(self.url, connect_timeout=self.connect_timeout,
                                transport_options={"confirm_publish": True})

    def _consumers(self, connection: kombu.Connection) -> int:
        """How many consumers take this host's requests (0: no such queue yet)."""
        channel = connection.channel()
        try:
            _, _, consumers = channel.queue_declare(queue=self.request_key, passive=True)
            return int(consumers)
        except amqp_exc.NotFound:
            return 0
        finally:
            try:
                channel.close()
            except Exception:  # a 404 closed it already
                LOG.debug("Channel already closed after the passive declare")

    def _publish(self, connection: kombu.Connection, event_type: str,
                 payload: Mapping[str, Any], context: Mapping[str, Any] | None) -> None:
        body = protocol.envelope(event_type, payload, self.publisher_id, protocol.utcnow(),
                                 context)
        producer = kombu.Producer(connection.channel(), exchange=self.exchange,
                                  serializer="json")
        # Persistent, confirmed by the broker before publish() returns.
        producer.publish(body, routing_key=self.request_key, delivery_mode=2,
                         declare=[self.exchange], retry=True,
                         retry_policy={"max_retries": 3, "interval_start": 1,
                                       "interval_step": 1})

    def announce(self, driver: str, valid_for: int) -> bool:
        """Tell the worker this host's nova-compute runs ``driver``; False
        when no worker queue exists yet (the announcement would be lost)."""
        with self._connection() as connection:
            connection.ensure_connection(max_retries=1)
            if self._consumers(connection) == 0:
                return False
            self._publish(connection, protocol.HELLO_EVENT,
                          protocol.build_hello(self.host, driver, valid_for), None)
            return True

    def call(self, payload: Mapping[str, Any], timeout: float,
             context: Mapping[str, Any] | None = None,
             on_step: Callable[[str, str], None] | None = None) -> protocol.WorkerResult:
        """Send one request and return its result; raise WorkerUnavailable
        (nothing sent) or WorkerTimedOut."""
        request_id = payload["request_id"]
        deadline = time.monotonic() + timeout
        received: list[dict[str, Any]] = []
        with self._connection() as connection, contextlib.ExitStack() as listening:
            # kombu wraps a refused connection in its OperationalError, which
            # is not among the transport's connection errors.
            broker_errors = (kombu_exc.OperationalError, *connection.connection_errors,
                             *connection.channel_errors)
            results = kombu.Queue(
                f"rescue-flow-nova-{socket.gethostname()}-{uuid.uuid4().hex}",
                exclusive=True, auto_delete=True,
                bindings=[kombu.binding(self.exchange,
                                        routing_key=f"{self.results_topic}.{priority}")
                          for priority in ("info", "error")])

            def keep(body: Any, message: Any) -> None:
                unwrapped = protocol.unwrap(body)
                if unwrapped is not None:
                    received.append(unwrapped)

            try:
                connection.ensure_connection(max_retries=2)
                consumers = self._consumers(connection)
                if consumers:  # listen before sending, so no result is missed
                    listening.enter_context(kombu.Consumer(
                        connection.channel(), queues=[results], callbacks=[keep],
                        no_ack=True, accept=["json"]))
            except broker_errors as exc:
                raise WorkerUnavailable(f"cannot reach the rescue-flow broker: {exc}") from exc
            if consumers == 0:
                raise WorkerUnavailable(
                    f"no rescue-flow worker is running for host {self.host} "
                    f"(queue {self.request_key} has no consumer)")
            try:
                self._publish(connection, protocol.REQUEST_EVENT, payload, context)
            except broker_errors as exc:
                # Unconfirmed, so perhaps on the broker: the worker refuses it
                # after start_by, or reverts at its deadline.
                raise WorkerTimedOut(
                    f"the broker did not confirm the request: {exc}") from exc
            while True:
                while received:
                    message = received.pop(0)
                    step = protocol.parse_step(message, request_id)
                    if step is not None and on_step is not None:
                        on_step(*step)
                    result = protocol.parse_result(message, request_id)
                    if result is not None:
                        return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerTimedOut(
                        f"no result from the rescue-flow worker within {timeout:g}s")
                try:
                    connection.drain_events(timeout=min(left, 1.0))
                except socket.timeout:  # TimeoutError only from Python 3.10 on
                    continue
                except connection.connection_errors as exc:
                    # The request is on the broker: the worker runs it
                    # and reverts at its deadline if nobody is listening.
                    raise WorkerTimedOut(
                        f"lost the broker while waiting for the result: {exc}") from exc
