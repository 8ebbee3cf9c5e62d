"""The worker's Prometheus endpoint, scraped over HTTP while it works.

A worker on kombu's in-memory broker and a simulated host serves its metrics
on 127.0.0.1, on a port the system picks (``[metrics] port = 0``); the tests
scrape it before, during and after requests, and read the counters moving.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from msgkit import GEN1_IMAGE, ResultLog, UnwritableHistory, make_conf, seed_host
from prometheus_client.parser import text_string_to_metric_families

from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.messaging import bus
from rescue_flow.messaging.client import Client
from rescue_flow.requests import Request
from rescue_flow.service.metrics import Metrics
from rescue_flow.service.worker import Worker

MEMORY = "kombu+memory:////"
HOST = "hv-metrics-1"
TIMEOUT = 20

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.02)


@pytest.fixture
def conf(tmp_path, unique_name) -> Any:
    return make_conf(str(tmp_path), HOST, MEMORY, unique_name,
                     metrics={"enabled": True, "bind_host": "127.0.0.1", "port": 0})


@pytest.fixture
def gen1(conf) -> str:
    """A seeded simulated host; the uuid of its Gen1 instance."""
    return seed_host(conf)[1][0]


@pytest.fixture
def worker(conf, gen1) -> Iterator[Worker]:
    worker = Worker(conf)
    worker.start()
    yield worker
    worker.stop()
    worker.wait()


def send(conf: Any, *requests: Request) -> None:
    client = Client(conf)
    try:
        for request in requests:
            client.send(request)
    finally:
        client.close()


def test_a_rescue_moves_the_counters_seen_during_and_after_it(conf) -> None:
    sim, (gen1, _) = seed_host(conf)
    sim.set_latency("create_vm", 1.0)  # holds the flow long enough to scrape it
    worker = Worker(conf)
    worker.start()
    try:
        assert worker.metrics_server is not None
        url = worker.metrics_server.url
        before = scrape(url)
        assert value(before, "rescue_flow_flows_total", kind="rescue",
                     outcome="success") == 0
        assert value(before, "rescue_flow_flows_in_flight") == 0
        with ResultLog(conf) as results:
            send(conf, Request("rescue", gen1, "metrics-1", host=HOST, image_id=GEN1_IMAGE,
                               source="client"))
            during: list[Samples] = []
            wait_until(lambda: during.append(scrape(url)) or
                       value(during[-1], "rescue_flow_flows_in_flight") == 1)
            assert value(during[-1], "rescue_flow_requests_received_total",
                         source="client") == 1
            assert value(during[-1], "rescue_flow_request_wait_seconds_count") == 1
            assert results.result_for("metrics-1")["payload"]["outcome"] == "success"
        after = scrape(url)
    finally:
        worker.stop()
        worker.wait()
    assert value(after, "rescue_flow_flows_total", kind="rescue", outcome="success") == 1
    assert value(after, "rescue_flow_flows_in_flight") == 0
    assert value(after, "rescue_flow_requests_queued") == 0
    assert value(after, "rescue_flow_requests_received_total", source="client") == 1
    # Every step of the rescue was timed once; the held one took its latency.
    for step in ("ValidateRescue", "CreateRescueVM", "StartRescueVM"):
        assert value(after, "rescue_flow_step_duration_seconds_count",
                     flow="rescue", step=step) == 1, step
    assert value(after, "rescue_flow_step_duration_seconds_bucket", flow="rescue",
                 step="CreateRescueVM", le="0.5") == 0
    assert value(after, "rescue_flow_step_duration_seconds_bucket", flow="rescue",
                 step="CreateRescueVM", le="2.5") == 1


def test_invalid_and_duplicate_requests_count_as_rejected(conf, gen1, worker) -> None:
    url = worker.metrics_server.url
    request = Request("unrescue", gen1, "twice", host=HOST, source="client")
    with ResultLog(conf) as results:
        send(conf, request)
        results.result_for("twice")
        send(conf, request)
        transport = bus.rescue_transport(conf)
        try:
            bus.Publisher(transport, conf.worker.exchange, "test").send(
                f"{conf.worker.requests_topic}.{HOST}", bus.REQUEST_EVENT,
                {"action": "rescue", "instance_uuid": "not-a-uuid", "request_id": "bad"})
        finally:
            transport.cleanup()
        results.wait_results(3)  # the duplicate's result is sent again
    samples = scrape(url)
    assert value(samples, "rescue_flow_requests_rejected_total", reason="duplicate") == 1
    assert value(samples, "rescue_flow_requests_rejected_total", reason="invalid") == 1
    assert value(samples, "rescue_flow_requests_rejected_total", reason="gave_up") == 0
    # The unrescue of an instance that is not rescued ran, with nothing to do.
    assert value(samples, "rescue_flow_flows_total", kind="unrescue",
                 outcome="nothing_to_do") == 1
    assert value(samples, "rescue_flow_requests_received_total", source="client") == 2
    assert value(samples, "rescue_flow_requests_received_total", source="other") == 1


def test_a_request_given_up_after_its_attempts_counts_as_rejected(
        tmp_path, unique_name) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name,
                     worker={"max_delivery_attempts": 2},
                     metrics={"enabled": True, "bind_host": "127.0.0.1", "port": 0})
    seed_host(conf)
    worker = Worker(conf, history=UnwritableHistory())  # type: ignore[arg-type]
    worker.start()
    try:
        with ResultLog(conf) as results:
            send(conf, Request("rescue", "00000000-0000-4000-8000-000000000001", "doomed",
                               host=HOST, source="nova"))
            results.result_for("doomed")
        samples = scrape(worker.metrics_server.url)
    finally:
        worker.stop()
        worker.wait()
    assert value(samples, "rescue_flow_requests_rejected_total", reason="gave_up") == 1
    assert value(samples, "rescue_flow_requests_received_total", source="nova") == 2


def test_quarantined_instances_are_read_from_the_list_on_each_scrape(conf, worker) -> None:
    url = worker.metrics_server.url
    assert value(scrape(url), "rescue_flow_quarantined_instances") == 0
    quarantine = QuarantineList.from_conf(conf)
    quarantine.add("00000000-0000-4000-8000-000000000001", "revert failed", "r1")
    quarantine.add("00000000-0000-4000-8000-000000000002", "revert failed", "r2")
    assert value(scrape(url), "rescue_flow_quarantined_instances") == 2
    quarantine.remove("00000000-0000-4000-8000-000000000001")
    assert value(scrape(url), "rescue_flow_quarantined_instances") == 1


def test_the_endpoint_closes_when_the_worker_stops(conf) -> None:
    seed_host(conf)
    worker = Worker(conf)
    worker.start()
    url = worker.metrics_server.url
    scrape(url)
    worker.stop()
    worker.wait()
    with pytest.raises(urllib.error.URLError):
        scrape(url)


def test_no_endpoint_unless_enabled(tmp_path, unique_name) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name)
    assert conf.metrics.enabled is False
    seed_host(conf)
    worker = Worker(conf)
    worker.start()
    try:
        assert worker.metrics_server is None
    finally:
        worker.stop()
        worker.wait()


def test_a_port_in_use_leaves_the_worker_running_without_metrics(
        tmp_path, unique_name, caplog) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name,
                         metrics={"enabled": True, "bind_host": "127.0.0.1", "port": port})
        _sim, (gen1, _) = seed_host(conf)
        worker = Worker(conf)
        worker.start()
        try:
            assert worker.metrics_server is None
            assert any("Could not serve metrics" in r.getMessage() for r in caplog.records)
            with ResultLog(conf) as results:
                send(conf, Request("unrescue", gen1, "still-works", host=HOST))
                assert results.result_for("still-works")["payload"]["outcome"] == \
                    "nothing_to_do"
        finally:
            worker.stop()
            worker.wait()


def test_two_workers_in_one_process_keep_their_own_metrics(tmp_path, unique_name) -> None:
    first, second = Metrics(), Metrics()
    first.received("nova")
    assert first.registry.get_sample_value(
        "rescue_flow_requests_received_total", {"source": "nova"}) == 1
    assert second.registry.get_sample_value(
        "rescue_flow_requests_received_total", {"source": "nova"}) == 0


def test_label_values_a_message_brings_are_bounded() -> None:
    metrics = Metrics()
    for source in ("nova", "x" * 300, None, 5):
        metrics.received(source)
    sources = {sample.labels["source"]
               for family in metrics.registry.collect()
               if family.name == "rescue_flow_requests_received"
               for sample in family.samples}
    assert sources == {"nova", "client", "cli", "demo", "other"}


def test_a_failed_quarantine_read_gives_nan_not_a_failed_scrape() -> None:
    metrics = Metrics()

    def broken() -> int:
        raise OSError("the history database is unreachable")

    metrics.watch_quarantine(broken)
    value = metrics.registry.get_sample_value("rescue_flow_quarantined_instances")
    assert value is not None and value != value  # NaN


def test_in_flight_counts_concurrent_flows_and_outcomes_by_kind() -> None:
    metrics = Metrics()
    started = threading.Barrier(3)

    def flow() -> None:
        metrics.flow_started(0.2)
        started.wait(5)

    threads = [threading.Thread(target=flow) for _ in range(2)]
    for thread in threads:
        thread.start()
    started.wait(5)
    assert metrics.registry.get_sample_value("rescue_flow_flows_in_flight") == 2
    for thread in threads:
        thread.join()
    metrics.flow_ended("rescue", "failed")
    metrics.flow_ended("unrescue", "interrupted")
    get = metrics.registry.get_sample_value
    assert get("rescue_flow_flows_in_flight") == 0
    assert get("rescue_flow_flows_total", {"kind": "rescue", "outcome": "failed"}) == 1
    assert get("rescue_flow_flows_total", {"kind": "unrescue", "outcome": "interrupted"}) == 1
    assert get("rescue_flow_request_wait_seconds_count") == 2
