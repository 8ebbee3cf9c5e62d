"""rescue-flow's use of oslo.messaging: transports, the envelope, publishing.

Two transports, because oslo.messaging reads the queue and exchange durability
(``[oslo_messaging_rabbit] amqp_durable_queues``) from the conf a transport is
built on, once, and RabbitMQ refuses to redeclare an exchange with another
durability:

- :func:`nova_transport`: Nova's exchange, with Nova's durability
  (``[nova] amqp_durable_queues``), never quorum queues.
- :func:`rescue_transport`: our own exchange (``[worker] exchange``), durable
  exchange and queues; messages are persistent (kombu's default), so requests
  survive a broker restart.

Each gets a private copy of the operator's oslo.messaging options (TLS,
heartbeats, ...) with only those values changed.

Sending goes through :class:`Publisher`, not ``oslo_messaging.Notifier``: the
Notifier logs and swallows a failed send, so a request routed while the broker
is away would be acknowledged as routed and lost. Every message names its
exchange in its target, so ``control_exchange`` (fixed when a transport is
created) plays no part.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import oslo_messaging
from oslo_config import cfg
from oslo_messaging import opts as om_opts
from oslo_utils import timeutils

from rescue_flow import exceptions

HANDLED = oslo_messaging.NotificationResult.HANDLED
REQUEUE = oslo_messaging.NotificationResult.REQUEUE

REQUEST_EVENT = "rescue_flow.request"
STEP_EVENT = "rescue_flow.step"
DRIVER_HELLO_EVENT = "rescue_flow.driver.hello"

_RABBIT = "oslo_messaging_rabbit"
_ENVELOPE_VERSION = "oslo.version"
_ENVELOPE_MESSAGE = "oslo.message"
# A host name becomes part of a routing key and a queue name: no AMQP topic
# wildcards, no spaces, nothing a queue name cannot hold.
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,254}$")


def check_host_name(host: Any) -> str:
    """Return ``host`` if it can name a per-host queue, else raise InvalidRequest."""
    if not isinstance(host, str) or not _HOST_NAME.match(host):
        raise exceptions.InvalidRequest(
            f"host must be a host name (letters, digits, '.', '-', '_', ':'), "
            f"got {host!r}")
    return host


class InvalidMessage(exceptions.InvalidRequest):
    """A message that is not a notification rescue-flow can read."""


def unwrap(body: Any) -> dict[str, Any]:
    """The notification inside a wire body: JSON text or a dict, with or
    without oslo.messaging's 2.0 envelope."""
    if isinstance(body, bytes | bytearray):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("message is not UTF-8 text") from None
    if isinstance(body, str):
        body = _json(body, "message")
    if not isinstance(body, dict):
        raise InvalidMessage(
            f"message must be a JSON object, got {type(body).__name__}")
    if _ENVELOPE_VERSION in body or _ENVELOPE_MESSAGE in body:
        version = body.get(_ENVELOPE_VERSION)
        if not isinstance(version, str) or version.split(".")[0] != "2":
            raise InvalidMessage(f"unsupported envelope version {version!r}")
        inner = body.get(_ENVELOPE_MESSAGE)
        if not isinstance(inner, str):
            raise InvalidMessage("envelope has no oslo.message string")
        body = _json(inner, "oslo.message")
        if not isinstance(body, dict):
            raise InvalidMessage("oslo.message is not a JSON object")
    return body


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidMessage(f"{what} is not JSON: {exc}") from None


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register oslo.messaging's options on ``conf`` (idempotent), so that
    ``transport_url`` and the rabbit options can be read before any transport
    exists."""
    for group, opts in om_opts.list_opts():
        conf.register_opts(opts, group=group)


def derived_conf(conf: cfg.ConfigOpts, rabbit: Mapping[str, Any]) -> cfg.ConfigOpts:
    """A private copy of the oslo.messaging options of ``conf``, with some
    ``[oslo_messaging_rabbit]`` values changed, to build one transport on."""
    register_opts(conf)
    derived = cfg.ConfigOpts()
    register_opts(derived)
    derived([], project="rescue-flow", default_config_files=[])
    for group, opts in om_opts.list_opts():
        source = conf if group is None else conf[group]
        for opt in opts:
            derived.set_override(opt.dest, getattr(source, opt.dest), group=group)
    for name, value in rabbit.items():
        derived.set_override(name, value, group=_RABBIT)
    return derived


def rescue_transport(conf: cfg.ConfigOpts) -> Any:
    """Transport for rescue-flow's own exchange: durable, never auto-deleted."""
    derived = derived_conf(conf, {"amqp_durable_queues": True, "amqp_auto_delete": False})
    return oslo_messaging.get_notification_transport(derived)


def nova_transport(conf: cfg.ConfigOpts) -> Any:
    """Transport for Nova's exchange, declared exactly as Nova declares it."""
    derived = derived_conf(conf, {
        "amqp_durable_queues": conf.nova.amqp_durable_queues,
        "amqp_auto_delete": False, "rabbit_quorum_queue": False})
    return oslo_messaging.get_notification_transport(derived, url=conf.nova.transport_url)


def transport_url(conf: cfg.ConfigOpts) -> str | None:
    """The URL rescue-flow's own messages use (oslo.messaging's rule)."""
    register_opts(conf)
    return conf.oslo_messaging_notifications.transport_url or conf.transport_url


def kombu_url(conf: cfg.ConfigOpts, transport: str | None = None) -> str:
    """The broker of :func:`rescue_transport` (or of the oslo.messaging URL
    ``transport``) as a kombu URL (hosts joined with ';' for failover), for
    the client's short-lived result queue and ``worker --check``."""
    url = oslo_messaging.TransportURL.parse(conf, transport or transport_url(conf))
    scheme = url.transport.replace("kombu+", "").replace("rabbit", "amqp")
    if not url.hosts:
        return f"{scheme}://{url.virtual_host or ''}" if scheme == "memory" else \
            f"{scheme}://guest:guest@localhost:5672/"
    urls = []
    for host in url.hosts:
        auth = quote(host.username or "", safe="")
        if host.password:
            auth += ":" + quote(host.password, safe="")
        urls.append(f"{scheme}://{auth + '@' if auth else ''}{host.hostname}:"
                    f"{host.port or 5672}/{quote(url.virtual_host or '', safe='')}")
    return ";".join(urls)


# kombu's ``ssl`` argument as oslo.messaging's rabbit driver computes it
# (impl_rabbit.Connection._fetch_ssl_params). The Nova driver's
# rescue_flow_nova.link.kombu_ssl is the same rules: it runs in nova-compute's
# environment, which has no rescue_flow, so the two cannot share code; change
# both. The driver follows oslo.messaging 14.2.5 (Nova 2023.1's); the worker
# runs 18.x, which with a CA file also passes server_hostname (the broker's
# name is checked against its certificate when the URL names one host), and
# so does this copy: the worker's own transport checks it, so must its
# client's and ``worker --check``'s connections.
_SSL_OPTIONS = ("ssl", "ssl_version", "ssl_key_file", "ssl_cert_file", "ssl_ca_file")
# impl_rabbit.Connection._SSL_PROTOCOLS: oslo.messaging's names (any case).
_SSL_VERSIONS = {name: getattr(ssl, attr) for name, attr in (
    ("tlsv1", "PROTOCOL_TLSv1"), ("sslv23", "PROTOCOL_SSLv23"),
    ("sslv2", "PROTOCOL_SSLv2"), ("sslv3", "PROTOCOL_SSLv3"),
    ("tlsv1_1", "PROTOCOL_TLSv1_1"), ("tlsv1_2", "PROTOCOL_TLSv1_2"))
    if hasattr(ssl, attr)}


def kombu_ssl(conf: cfg.ConfigOpts, transport: str | None = None,
              check_files: bool = False) -> Any:
    """kombu's ``ssl`` argument for the broker of :func:`rescue_transport`
    (or of the oslo.messaging URL ``transport``): ``[oslo_messaging_rabbit]``
    ``ssl``, ``ssl_version``, ``ssl_key_file``, ``ssl_cert_file`` and
    ``ssl_ca_file``, each overridden by the same name in the URL's query
    (``?ssl=1``), as oslo.messaging reads them. False without TLS; True with
    TLS and nothing else set; else a dict, with ``cert_reqs`` = CERT_REQUIRED
    and ``server_hostname`` when a CA file is set. ValueError for an unknown
    ``ssl_version``, and with ``check_files`` for a TLS file that is not a
    readable file (asked only by what connects: another user's command that
    never reaches the broker must not stop on the service account's key)."""
    register_opts(conf)
    url = oslo_messaging.TransportURL.parse(conf, transport or transport_url(conf))
    query = url.query
    opts = {opt.dest: opt for group, group_opts in om_opts.list_opts() if group == _RABBIT
            for opt in group_opts}
    # oslo.messaging's ConfigOptsProxy: a URL value, converted by the option's type.
    value = {name: opts[name].type(query[name]) if name in query else conf[_RABBIT][name]
             for name in _SSL_OPTIONS}
    if not value["ssl"]:
        return False
    params: dict[str, Any] = {}
    if value["ssl_version"]:
        try:
            params["ssl_version"] = _SSL_VERSIONS[value["ssl_version"].lower()]
        except KeyError:
            where = "the transport URL's" if "ssl_version" in query else f"[{_RABBIT}]"
            raise ValueError(
                f"invalid {where} ssl_version {value['ssl_version']!r}: this Python offers "
                f"{', '.join(sorted(_SSL_VERSIONS))} (oslo.messaging's names; unset: the "
                f"newest TLS both sides speak)") from None
    for name in ("ssl_key_file", "ssl_cert_file", "ssl_ca_file"):
        # Else the TLS handshake fails with an errno that names no option.
        # (On Windows os.access sees only whether the file is there.)
        path = value[name]
        if check_files and path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            where = "the transport URL's" if name in query else f"[{_RABBIT}]"
            raise ValueError(f"{where} {name}: no file this process can read at "
                             f"{os.path.abspath(path)!r}")
    if value["ssl_key_file"]:
        params["keyfile"] = value["ssl_key_file"]
    if value["ssl_cert_file"]:
        params["certfile"] = value["ssl_cert_file"]
    if value["ssl_ca_file"]:
        params["ca_certs"] = value["ssl_ca_file"]
        params["cert_reqs"] = ssl.CERT_REQUIRED
        # impl_rabbit.Connection._get_ssl_server_hostname: None for several
        # hosts (kombu then checks no name).
        params["server_hostname"] = url.hosts[0].hostname if len(url.hosts) == 1 else None
    return params or True


class Publisher:
    """Sends notifications (envelope 2.0, as a Notifier would) and raises when
    the broker did not take them."""

    def __init__(self, transport: Any, exchange: str, publisher_id: str) -> None:
        self.transport = transport
        self.exchange = exchange
        self.publisher_id = publisher_id

    def send(self, topic: str, event_type: str, payload: Any, priority: str = "info",
             retry: int | None = None, context: Mapping[str, Any] | None = None) -> str:
        """Publish on ``<topic>.<priority>``; return the message id.

        ``retry`` None waits for the broker as long as it takes (the
        ``[oslo_messaging_notifications] retry`` default); 0 tries once.
        """
        message = {
            "message_id": str(uuid.uuid4()),
            "publisher_id": self.publisher_id,
            "event_type": event_type,
            "priority": priority.upper(),
            "payload": payload,
            "timestamp": str(timeutils.utcnow()),
        }
        target = oslo_messaging.Target(exchange=self.exchange,
                                       topic=f"{topic}.{priority.lower()}")
        # The one call below the public API: Notifier.info() would swallow errors.
        self.transport._send_notification(target, dict(context or {}), message,
                                          version=2.0, retry=retry)
        return message["message_id"]
