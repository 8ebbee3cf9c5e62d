"""WorkerLink on a real RabbitMQ, with a stand-in worker made of kombu.

The broker is $RESCUE_FLOW_RABBIT_URL (else the local default); without one
these tests skip, unless CI is set, where they fail. The real worker meets
the real driver in nova_driver/tests/functional.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import kombu
import pytest
from oslo_config import cfg

from rescue_flow_nova import link, protocol

URL = os.environ.get("RESCUE_FLOW_RABBIT_URL") or "rabbit://guest:guest@127.0.0.1:5672/"
HOST = "hv-link"


@pytest.fixture(scope="module")
def amqp_url() -> str:
    url = link.kombu_url(cfg.ConfigOpts(), URL)
    connection = kombu.Connection(url, connect_timeout=2)
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no RabbitMQ at {URL} (CI is set, so this is an error): {exc}")
        pytest.skip(f"no RabbitMQ at {URL}: {exc}")
    finally:
        connection.release()
    return url


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

    def __init__(self, url: str, names: dict[str, str], answer: Any) -> None:
        self.connection = kombu.Connection(url)
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
        with kombu.Connection(self.connection.as_uri(include_password=True)) as conn:
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
