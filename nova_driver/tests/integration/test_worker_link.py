"""WorkerLink on a real RabbitMQ, with a stand-in worker made of kombu.

The broker is $RESCUE_FLOW_RABBIT_URL (else the local default); without one
these tests skip, unless CI is set, where they fail. The TLS tests follow the
same rule for the broker at $RESCUE_FLOW_RABBIT_TLS_URL, whose certificate
the CA in $RESCUE_FLOW_RABBIT_TLS_CA signed (.ci/run starts one). The real
worker meets the real driver in nova_driver/tests/functional.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import kombu
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from oslo_config import cfg

from rescue_flow_nova import link, protocol

URL = os.environ.get("RESCUE_FLOW_RABBIT_URL") or "rabbit://guest:guest@127.0.0.1:5672/"
TLS_URL = os.environ.get("RESCUE_FLOW_RABBIT_TLS_URL")
TLS_CA = os.environ.get("RESCUE_FLOW_RABBIT_TLS_CA")
HOST = "hv-link"


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error)")
    pytest.skip(reason)


def reachable(url: str, ssl: Any = False) -> None:
    connection = kombu.Connection(url, ssl=ssl, connect_timeout=2)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as exc:
        unavailable(f"no RabbitMQ at {connection.as_uri()}: {exc}")
    finally:
        connection.release()


@pytest.fixture(scope="module")
def amqp_url() -> str:
    url = link.kombu_url(cfg.ConfigOpts(), URL)
    reachable(url)
    return url


def nova_conf(ca_file: str) -> cfg.ConfigOpts:
    """nova-compute's CONF with ``[oslo_messaging_rabbit] ssl_ca_file``."""
    conf = cfg.ConfigOpts()
    conf([], project="nova", default_config_files=[])
    link.register_rabbit_opts(conf)
    conf.set_override("ssl_ca_file", ca_file, group="oslo_messaging_rabbit")
    return conf


@pytest.fixture(scope="module")
def tls_broker() -> tuple[str, Any]:
    """The TLS broker's kombu URL and ssl argument, as the driver makes them
    from its transport URL (?ssl=1) and nova.conf (the CA file)."""
    if not (TLS_URL and TLS_CA):
        unavailable("no RabbitMQ with TLS: RESCUE_FLOW_RABBIT_TLS_URL and "
                    "RESCUE_FLOW_RABBIT_TLS_CA are unset (.ci/run sets them)")
    conf = nova_conf(TLS_CA)
    url, ssl = link.kombu_url(conf, TLS_URL), link.kombu_ssl(conf, TLS_URL)
    assert isinstance(ssl, dict) and ssl["ca_certs"] == TLS_CA
    reachable(url, ssl)
    return url, ssl


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"exchange": f"rf-link-{tag}", "requests_topic": f"req-{tag}",
            "results_topic": f"res-{tag}"}


@pytest.fixture
def worker_link(amqp_url: str, names: dict[str, str]) -> link.WorkerLink:
    return link.WorkerLink(amqp_url, names["exchange"], names["requests_topic"],
                           names["results_topic"], HOST)


class StandInWorker:
    """Consumes the host's request queue (declared as the worker declares it)
    and answers each request with ``answer(payload)`` on the results topic."""

    def __init__(self, url: str, names: dict[str, str], answer: Any,
                 ssl: Any = False) -> None:
        self.ssl = ssl
        self.connection = kombu.Connection(url, ssl=ssl)
        self.exchange = kombu.Exchange(names["exchange"], type="topic", durable=True,
                                       auto_delete=False)
        key = f"{names['requests_topic']}.{HOST}.info"
        self.queue = kombu.Queue(key, self.exchange, routing_key=key, durable=True,
                                 auto_delete=False)
        self.results_key = f"{names['results_topic']}.info"
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandInWorker:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        with kombu.Connection(self.connection.as_uri(include_password=True),
                              ssl=self.ssl) as conn:
            self.queue.bind(conn.channel()).delete()
        self.connection.release()

    def _on_message(self, body: Any, message: Any) -> None:
        inner = json.loads(body["oslo.message"]) if isinstance(body, dict) else body
        self.received.append({"routing_key": message.delivery_info["routing_key"],
                              "persistent": message.properties.get("delivery_mode") == 2,
                              **inner})
        message.ack()
        reply = self.answer(inner)
        if reply is not None:
            producer = kombu.Producer(self.connection.channel(), exchange=self.exchange,
                                      serializer="json")
            producer.publish(reply, routing_key=self.results_key)

    def _run(self) -> None:
        with kombu.Consumer(self.connection.channel(), queues=[self.queue],
                            callbacks=[self._on_message], accept=["json"]):
            self._ready.set()
            while not self._stop.is_set():
                try:
                    self.connection.drain_events(timeout=0.2)
                except TimeoutError:
                    continue


def result_for(message: dict[str, Any], outcome: str = "success") -> dict[str, Any]:
    """The worker's result for a request, in the shape of docs/protocol-examples."""
    payload = message["payload"]
    return {"event_type": f"rescue_flow.{payload['action']}.end",
            "payload": {"request_id": payload["request_id"], "action": payload["action"],
                        "instance_uuid": payload["instance_uuid"], "host": HOST,
                        "outcome": outcome}}


def a_request(action: str = "rescue") -> dict[str, Any]:
    return protocol.build_request(action, "9c2a6e3e-52a8-4c63-8d4b-0f6c3e1d2a77", HOST,
                                  f"req-{uuid.uuid4()}", protocol.utcnow(), 900, 180, 60)


def test_without_a_worker_the_call_fails_at_once_and_sends_nothing(
        worker_link: link.WorkerLink) -> None:
    began = time.monotonic()
    with pytest.raises(link.WorkerUnavailable, match="no rescue-flow worker is running"):
        worker_link.call(a_request(), timeout=30)
    assert time.monotonic() - began < 5
    assert worker_link.announce("some.Driver", 3600) is False


def test_without_a_broker_the_call_fails_as_unavailable_and_sends_nothing(
        names: dict[str, str]) -> None:
    """A refused connection is kombu's OperationalError, not one of the
    transport's connection errors: it must still say "nothing sent"."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = link.WorkerLink(f"amqp://guest:guest@127.0.0.1:{port}//", names["exchange"],
                              names["requests_topic"], names["results_topic"], HOST,
                              connect_timeout=1)
    with pytest.raises(link.WorkerUnavailable, match="cannot reach the rescue-flow broker"):
        nowhere.call(a_request(), timeout=30)


def test_a_call_delivers_the_request_persistently_and_returns_its_result(
        amqp_url: str, names: dict[str, str], worker_link: link.WorkerLink) -> None:
    request = a_request()
    with StandInWorker(amqp_url, names, result_for) as worker:
        result = worker_link.call(request, timeout=20, context={"request_id": "req-x"})
    assert (result.request_id, result.outcome, result.ok) == (
        request["request_id"], "success", True)
    (got,) = worker.received
    assert got["payload"] == request and got["event_type"] == protocol.REQUEST_EVENT
    assert got["routing_key"] == f"{names['requests_topic']}.{HOST}.info"
    assert got["persistent"] and got["_context_request_id"] == "req-x"


def test_a_worker_that_never_answers_times_out(
        amqp_url: str, names: dict[str, str], worker_link: link.WorkerLink) -> None:
    with StandInWorker(amqp_url, names, lambda message: None), \
            pytest.raises(link.WorkerTimedOut, match=r"within 1\.5s"):
        worker_link.call(a_request(), timeout=1.5)


def test_the_announcement_reaches_a_running_worker(
        amqp_url: str, names: dict[str, str], worker_link: link.WorkerLink) -> None:
    with StandInWorker(amqp_url, names, lambda message: None) as worker:
        assert worker_link.announce("rescue_flow_nova.compute_hyperv.HyperVDriver", 3600)
        deadline = time.monotonic() + 10
        while not worker.received and time.monotonic() < deadline:
            time.sleep(0.05)
    (got,) = worker.received
    assert got["event_type"] == protocol.HELLO_EVENT
    assert got["payload"] == protocol.build_hello(
        HOST, "rescue_flow_nova.compute_hyperv.HyperVDriver", 3600)


def test_over_tls_a_call_and_an_announcement_reach_the_worker(
        tls_broker: tuple[str, Any], names: dict[str, str]) -> None:
    url, ssl = tls_broker
    worker_link = link.WorkerLink(url, names["exchange"], names["requests_topic"],
                                  names["results_topic"], HOST, ssl=ssl)
    request = a_request()

    def answer(message: dict[str, Any]) -> dict[str, Any] | None:
        return result_for(message) if message["event_type"] == protocol.REQUEST_EVENT else None

    with StandInWorker(url, names, answer, ssl=ssl) as worker:
        result = worker_link.call(request, timeout=20)
        assert worker_link.announce("rescue_flow_nova.compute_hyperv.HyperVDriver", 3600)
        deadline = time.monotonic() + 10
        while len(worker.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (result.request_id, result.outcome) == (request["request_id"], "success")
    assert [got["event_type"] for got in worker.received] == [
        protocol.REQUEST_EVENT, protocol.HELLO_EVENT]


def another_ca(path: Any) -> str:
    """A CA certificate of the same name as the broker's, with another key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rescue-flow CI CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_over_tls_a_broker_the_ca_did_not_sign_is_refused_and_nothing_is_sent(
        tls_broker: tuple[str, Any], names: dict[str, str], tmp_path: Any) -> None:
    url, ssl = tls_broker
    wrong = link.kombu_ssl(nova_conf(another_ca(tmp_path / "other-ca.pem")), TLS_URL)
    worker_link = link.WorkerLink(url, names["exchange"], names["requests_topic"],
                                  names["results_topic"], HOST, connect_timeout=2, ssl=wrong)
    with StandInWorker(url, names, result_for, ssl=ssl) as worker:
        with pytest.raises(link.WorkerUnavailable,
                           match=r"^cannot reach the rescue-flow broker: .*"
                           r"CERTIFICATE_VERIFY_FAILED\] certificate verify failed"):
            worker_link.call(a_request(), timeout=20)
        assert worker_link.ssl["cert_reqs"] == tls_broker[1]["cert_reqs"]
        time.sleep(0.5)  # what was sent would have arrived by now
    assert worker.received == []
