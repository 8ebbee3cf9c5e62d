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
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import kombu
import oslo_messaging
from amqp import exceptions as amqp_exc
from kombu import exceptions as kombu_exc
from oslo_messaging import opts as om_opts

from rescue_flow_nova import protocol

LOG = logging.getLogger(__name__)


class WorkerUnavailable(Exception):
    """No rescue-flow worker takes this host's requests; nothing was sent."""


class WorkerTimedOut(Exception):
    """The worker did not report within the driver's timeout."""


class InvalidBrokerSettings(WorkerUnavailable):
    """nova.conf's broker settings cannot be used; nothing was sent."""


def kombu_url(conf: Any, transport_url: str | None) -> str:
    """An oslo.messaging URL as kombu URLs (several hosts joined with ';')."""
    url = oslo_messaging.TransportURL.parse(conf, transport_url)
    scheme = url.transport.replace("kombu+", "").replace("rabbit", "amqp")
    urls = []
    for host in url.hosts:
        auth = quote(host.username or "", safe="")
        if host.password:
            auth += ":" + quote(host.password, safe="")
        # 5672 also with TLS, as oslo.messaging writes it: kombu's 5671
        # applies only to a URL without a port, and oslo.messaging never
        # hands kombu one.
        urls.append(f"{scheme}://{auth + '@' if auth else ''}{host.hostname}:"
                    f"{host.port or 5672}/{quote(url.virtual_host or '', safe='')}")
    return ";".join(urls) or f"{scheme}://guest:guest@localhost:5672/"


# kombu's ``ssl`` argument, as oslo.messaging's rabbit driver computes it
# (impl_rabbit.Connection._fetch_ssl_params, oslo.messaging 14.2.5 of the
# 2023.1 constraints). rescue_flow.messaging.bus.kombu_ssl is the worker's
# copy of the same rules: this package runs in nova-compute's environment and
# must not import rescue_flow, so the two cannot share code; change both.
_RABBIT = "oslo_messaging_rabbit"
_SSL_OPTIONS = ("ssl", "ssl_version", "ssl_key_file", "ssl_cert_file", "ssl_ca_file")
# impl_rabbit.Connection._SSL_PROTOCOLS: oslo.messaging's names (any case).
_SSL_VERSIONS = {name: getattr(ssl, attr) for name, attr in (
    ("tlsv1", "PROTOCOL_TLSv1"), ("sslv23", "PROTOCOL_SSLv23"),
    ("sslv2", "PROTOCOL_SSLv2"), ("sslv3", "PROTOCOL_SSLv3"),
    ("tlsv1_1", "PROTOCOL_TLSv1_1"), ("tlsv1_2", "PROTOCOL_TLSv1_2"))
    if hasattr(ssl, attr)}


def register_rabbit_opts(conf: Any) -> dict[str, Any]:
    """Register oslo.messaging's own ``[oslo_messaging_rabbit]`` options on
    ``conf`` (nova-compute's rabbit transport registers the same ones when it
    loads; registering them again is a no-op) and return them by name."""
    opts = [opt for group, group_opts in om_opts.list_opts() if group == _RABBIT
            for opt in group_opts]
    conf.register_opts(opts, group=_RABBIT)
    return {opt.dest: opt for opt in opts}


def kombu_ssl(conf: Any, transport_url: str | None) -> Any:
    """kombu's ``ssl`` argument for the broker of ``transport_url``, as
    oslo.messaging's rabbit driver makes it: from nova.conf's
    ``[oslo_messaging_rabbit]`` ``ssl``, ``ssl_version``, ``ssl_key_file``,
    ``ssl_cert_file`` and ``ssl_ca_file``, each overridden by the same name
    in the URL's query (``rabbit://...?ssl=1``). False without TLS; True
    with TLS and nothing else set; else a dict, with ``cert_reqs`` =
    CERT_REQUIRED when a CA file is set. InvalidBrokerSettings for an
    ``ssl_version`` oslo.messaging does not know."""
    opts = register_rabbit_opts(conf)
    query = oslo_messaging.TransportURL.parse(conf, transport_url).query
    group = conf[_RABBIT]
    # oslo.messaging's ConfigOptsProxy: a URL value, converted by the option's type.
    try:
        value = {name: opts[name].type(query[name]) if name in query else group[name]
                 for name in _SSL_OPTIONS}
    except ValueError as exc:
        # Refused as oslo.messaging refuses it, but as a broker setting Nova
        # shows with "host unchanged" (the rescue config drive then removed).
        raise InvalidBrokerSettings(f"invalid TLS setting in the transport URL: "
                                    f"{exc}") from None
    if not value["ssl"]:
        return False
    params: dict[str, Any] = {}
    if value["ssl_version"]:
        try:
            params["ssl_version"] = _SSL_VERSIONS[value["ssl_version"].lower()]
        except KeyError:
            where = "the transport URL's" if "ssl_version" in query else f"[{_RABBIT}]"
            raise InvalidBrokerSettings(
                f"invalid {where} ssl_version {value['ssl_version']!r}: this Python offers "
                f"{', '.join(sorted(_SSL_VERSIONS))} (oslo.messaging's names; unset: the "
                f"newest TLS both sides speak)") from None
    for name in ("ssl_key_file", "ssl_cert_file", "ssl_ca_file"):
        # Else the TLS handshake fails with an errno that names no option.
        # (On Windows os.access sees only whether the file is there.)
        path = value[name]
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            where = "the transport URL's" if name in query else f"[{_RABBIT}]"
            raise InvalidBrokerSettings(f"{where} {name}: no file nova-compute can read "
                                        f"at {os.path.abspath(path)!r}")
    if value["ssl_key_file"]:
        params["keyfile"] = value["ssl_key_file"]
    if value["ssl_cert_file"]:
        params["certfile"] = value["ssl_cert_file"]
    if value["ssl_ca_file"]:
        params["ca_certs"] = value["ssl_ca_file"]
        params["cert_reqs"] = ssl.CERT_REQUIRED
    return params or True


class WorkerLink:
    """Sends this host's requests and announcements, and waits for results."""

    def __init__(self, url: str, exchange: str, requests_topic: str, results_topic: str,
                 host: str, connect_timeout: float = 10.0, ssl: Any = False) -> None:
        self.url = url
        self.ssl = ssl  # kombu's ssl argument: see kombu_ssl
        self.host = host
        self.results_topic = results_topic
        self.request_key = f"{protocol.request_topic(requests_topic, host)}.info"
        # Declared exactly as the worker's oslo.messaging transport declares it.
        self.exchange = kombu.Exchange(exchange, type="topic", durable=True,
                                       auto_delete=False)
        self.connect_timeout = connect_timeout
        self.publisher_id = f"rescue-flow-nova:{host}"

    def _connection(self) -> kombu.Connection:
        return kombu.Connection(self.url, ssl=self.ssl, connect_timeout=self.connect_timeout,
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
