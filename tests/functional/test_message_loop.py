"""The whole loop on an in-memory broker: Nova's events and the client's
requests through the worker to a simulated host, and back as notifications.

``kombu+memory://`` runs oslo.messaging's real rabbit driver on kombu's
in-process transport. Its state is global to the process, so every test
uses its own exchange, topics and pool (``unique_name``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import oslo_messaging
import pytest
from msgkit import (
    GEN1_IMAGE,
    GEN2_IMAGE,
    ResultLog,
    UnwritableHistory,
    client_config_file,
    legacy_event,
    make_conf,
    nova_context,
    publishing_as_nova,
    seed_host,
    versioned_event,
)

from rescue_flow import cli
from rescue_flow.commands import demo_loop
from rescue_flow.messaging import bus, ordered_listener
from rescue_flow.messaging.client import Client
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.service.worker import Worker

MEMORY = "kombu+memory:////"
HOST = "hv-func-1"
TIMEOUT = 20


@pytest.fixture
def conf(tmp_path, unique_name) -> Any:
    return make_conf(str(tmp_path), HOST, MEMORY, unique_name)


@pytest.fixture
def results(conf) -> Iterator[ResultLog]:
    with ResultLog(conf) as log:
        yield log


@pytest.fixture
def running(conf) -> Iterator[Any]:
    """A started worker factory; every worker made is stopped at the end."""
    workers: list[Worker] = []

    def start(runner: Any = None, worker_conf: Any = None) -> Worker:
        worker = Worker(worker_conf or conf, runner=runner)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
        worker.wait()


def _send(conf: Any, *requests: Request, progress: bool = False) -> None:
    client = Client(conf)
    try:
        for request in requests:
            client.send(request, progress=progress)
    finally:
        client.close()


@pytest.mark.parametrize("generation", ["", "pre_shares_2024.1"])
def test_nova_versioned_rescue_runs_on_the_host_and_unrescue_restores_it(
        conf, results, running, generation) -> None:
    sim, (gen1, _) = seed_host(conf)
    before = sim.view()
    running()
    event_type, payload, nova_request = versioned_event(
        "instance-rescue-start.json", gen1, HOST, GEN1_IMAGE, generation)
    with publishing_as_nova(conf, HOST) as nova:
        nova.info(nova_context(nova_request), event_type, payload)
        rescued = results.wait_results(1)[0]
        assert rescued["event_type"] == "rescue_flow.rescue.end"
        assert rescued["publisher_id"] == f"rescue-flow:{HOST}"
        body = rescued["payload"]
        assert (body["outcome"], body["instance_uuid"], body["host"]) == ("success", gen1, HOST)
        assert body["request_id"] == f"nova:{nova_request}:rescue:{gen1}"
        assert "StartRescueVM" in body["step_durations"]
        rescue_vm = sim.view()["vms"]["instance-00000001-rescue"]
        assert rescue_vm["power_state"] == "running"

        event_type, payload, nova_request = versioned_event(
            "instance-unrescue-start.json", gen1, HOST, None, generation)
        nova.info(nova_context(nova_request), event_type, payload)
        assert results.wait_results(2)[1]["payload"]["outcome"] == "success"
    assert sim.view() == before


def test_nova_legacy_rescue_and_unrescue_of_a_gen2_instance(conf, results, running) -> None:
    sim, (_, gen2) = seed_host(conf)
    before = sim.view()
    running()
    with publishing_as_nova(conf, HOST, legacy=True) as nova:
        for count, action in enumerate(("rescue", "unrescue"), start=1):
            event_type, payload, nova_request = legacy_event(action, gen2, HOST, GEN2_IMAGE)
            nova.info(nova_context(nova_request), event_type, payload)
            result = results.wait_results(count)[-1]
            assert (result["event_type"], result["payload"]["outcome"]) == (
                f"rescue_flow.{action}.end", "success")
    assert sim.view() == before


def test_one_nova_action_sent_in_both_formats_runs_once(conf, results, running) -> None:
    _sim, (gen1, _) = seed_host(conf)
    worker = running()
    event_type, payload, nova_request = versioned_event(
        "instance-rescue-start.json", gen1, HOST, GEN1_IMAGE)
    legacy_type, legacy_payload, _ = legacy_event("rescue", gen1, HOST, GEN1_IMAGE)
    with publishing_as_nova(conf, HOST) as versioned, \
            publishing_as_nova(conf, HOST, legacy=True) as legacy:
        versioned.info(nova_context(nova_request), event_type, payload)
        legacy.info(nova_context(nova_request), legacy_type, legacy_payload)
        results.wait_results(1)
        results.wait_for(lambda _: worker.handler.stats["duplicates"] == 1)
    assert worker.flows.stats["ran"] == 1
    assert len(results.results()) == 1


def test_requests_for_one_instance_run_in_arrival_order(conf, results, running) -> None:
    _sim, (gen1, _) = seed_host(conf)
    running()
    actions = ["rescue", "unrescue"] * 3
    _send(conf, *(Request(action, gen1, f"order-{i}", host=HOST)
                  for i, action in enumerate(actions)))
    done = results.wait_results(len(actions))
    # Out of order, an unrescue would find nothing to do.
    assert [(r["payload"]["request_id"], r["payload"]["outcome"]) for r in done] == [
        (f"order-{i}", "success") for i in range(len(actions))]


def test_the_listener_hands_over_one_instances_messages_one_at_a_time_in_arrival_order(
        conf) -> None:
    transport = bus.rescue_transport(conf)
    first_running = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def handler(context: Any, message: Any) -> Any:
        name = message["payload"]["name"]
        seen.append(f"{name} start")
        if name == "a0":
            first_running.set()
            assert release.wait(TIMEOUT)
        seen.append(f"{name} end")
        return bus.HANDLED

    target = oslo_messaging.Target(exchange=conf.worker.exchange, topic="ordered")
    listener = ordered_listener.OrderedListener(
        transport, [target], handler, lambda m: m["payload"]["key"], max_workers=4)
    listener.start()
    publisher = bus.Publisher(transport, conf.worker.exchange, "test")
    try:
        for index in range(6):
            publisher.send("ordered", "test.event", {"key": "a", "name": f"a{index}"})
        assert first_running.wait(TIMEOUT)
        # Every message has arrived, and with three threads free none of a1-a5 runs.
        _wait_until(lambda: listener.running_and_waiting() == (1, 5))
        release.set()
        _wait_until(lambda: len(seen) == 12)
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    assert seen == [f"a{i} {edge}" for i in range(6) for edge in ("start", "end")]


def test_acks_skip_the_drivers_duplicate_cache(conf) -> None:
    # The rabbit driver would drop a redelivery of a message in that cache
    # without acking it; _Settlements relies on the driver internals below,
    # so an oslo.messaging upgrade that moves them fails here, not silently.
    transport = bus.rescue_transport(conf)
    taken: list[Any] = []

    class Capturing(ordered_listener.OrderedListener):
        def _process_incoming(self, incoming: list[Any]) -> None:
            taken.append(incoming[0])
            super()._process_incoming(incoming)

    target = oslo_messaging.Target(exchange=conf.worker.exchange, topic="acks")
    listener = Capturing(transport, [target], lambda c, m: bus.HANDLED,
                         lambda m: None, max_workers=1)
    listener.start()
    try:
        bus.Publisher(transport, conf.worker.exchange, "test").send(
            "acks", "test.event", {})
        _wait_until(lambda: taken and listener.running_and_waiting() == (0, 0))
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    [message] = taken
    assert hasattr(message, "_message_operations_handler")
    assert message.unique_id
    assert message.unique_id not in message.listener.msg_id_cache.prev_msgids


def _wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


class GatedRunner:
    """Holds every flow at a barrier of two and records the peak concurrency."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=TIMEOUT)
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def execute(self, request: Request, on_step: Any = None) -> Result:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.barrier.wait()  # only passes when two flows overlap
        with self.lock:
            self.running -= 1
        return Result(request.request_id, request.action, request.instance_uuid, HOST,
                      Outcome.SUCCESS)


def test_different_instances_run_in_parallel_up_to_max_concurrent_flows(
        tmp_path, unique_name, running) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name,
                     worker={"max_concurrent_flows": 2})
    runner = GatedRunner()
    running(runner, conf)
    with ResultLog(conf) as results:
        _send(conf, *(Request("unrescue", f"00000000-0000-4000-8000-00000000000{i}",
                              f"par-{i}", host=HOST) for i in range(6)))
        done = results.wait_results(6)
    assert {r["payload"]["outcome"] for r in done} == {"success"}
    assert runner.peak == 2


def test_bad_requests_get_error_notifications_and_the_listener_stays_up(
        conf, results, running) -> None:
    seed_host(conf)
    worker = running()
    transport = bus.rescue_transport(conf)
    publisher = bus.Publisher(transport, conf.worker.exchange, "test")
    topic = f"{conf.worker.requests_topic}.{HOST}"
    bad = ["text", [1, 2], {}, {"action": "rescue", "instance_uuid": 5, "request_id": "b1"},
           {"action": "rescue", "instance_uuid": "not-a-uuid", "request_id": "b2"},
           {"action": "boot", "instance_uuid": "00000000-0000-4000-8000-000000000001",
            "request_id": "b3"}]
    for payload in bad:
        publisher.send(topic, bus.REQUEST_EVENT, payload)
    publisher.send(topic, "something.else", {"hello": 1})
    transport.cleanup()
    errors = results.wait_results(len(bad) + 1)
    assert all(e["event_type"].endswith(".error") for e in errors)
    assert all(e["payload"]["reason"].startswith("invalid request") for e in errors)
    # Still listening: an unknown instance is refused by the host, not the listener.
    _send(conf, Request("unrescue", "00000000-0000-4000-8000-0000000000aa", "after",
                        host=HOST))
    assert results.result_for("after")["payload"]["outcome"] == "refused"
    assert worker.handler.stats["requeued"] == 0


def test_a_request_that_cannot_be_recorded_is_retried_a_bounded_number_of_times(
        tmp_path, unique_name) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name,
                     worker={"max_delivery_attempts": 4})
    seed_host(conf)
    worker = Worker(conf, history=UnwritableHistory())  # type: ignore[arg-type]
    worker.start()
    try:
        with ResultLog(conf) as results:
            _send(conf, Request("rescue", "00000000-0000-4000-8000-000000000001", "doomed",
                                host=HOST))
            error = results.result_for("doomed")
            assert error["event_type"] == "rescue_flow.rescue.error"
            assert error["payload"]["reason"].startswith("gave up after 4 attempts")
        # Acked after the fourth delivery: it never comes back.
        assert worker.handler.stats["received"] == 4
        assert worker.handler.stats["gave_up"] == 1
        assert worker.flows.stats["ran"] == 0
    finally:
        worker.stop()
        worker.wait()


def test_client_wait_shows_the_steps_and_exits_0_on_success(
        conf, running, tmp_path, capsys) -> None:
    _sim, (gen1, _) = seed_host(conf)
    running()
    code = cli.main([*_conf_args(conf, tmp_path), "rescue", gen1, "--host", HOST, "--wait",
                     "--timeout", str(TIMEOUT)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "StartRescueVM: SUCCESS" in out
    assert f"rescue {gen1}: success" in out


def test_client_wait_exits_1_with_the_workers_reason_on_failure(
        conf, running, tmp_path, capsys) -> None:
    sim, (gen1, _) = seed_host(conf)
    running()
    sim.set_fault("create_vm", "permanent")
    code = cli.main([*_conf_args(conf, tmp_path), "rescue", gen1, "--host", HOST, "--wait"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "CreateRescueVM: FAILURE" in out
    assert f"rescue {gen1}: failed: CreateRescueVM failed: create_vm failed" in out
    assert "reverted: CreateRescueVM" in out


def test_client_wait_gives_up_clearly_when_no_worker_answers(conf, tmp_path, capsys) -> None:
    code = cli.main([*_conf_args(conf, tmp_path), "unrescue",
                     "00000000-0000-4000-8000-000000000001", "--host", "hv-nobody",
                     "--wait", "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 4
    assert "no result for request" in err and "is its worker running?" in err


def test_client_refuses_an_instance_id_that_is_not_a_uuid(conf, tmp_path, capsys) -> None:
    code = cli.main([*_conf_args(conf, tmp_path), "rescue", "instance-1"])
    assert code == 2
    assert "not a UUID" in capsys.readouterr().err


def test_requests_recorded_but_not_started_when_a_worker_stops_run_at_its_next_start(
        conf, results) -> None:
    seed_host(conf)
    gate = threading.Event()
    started = threading.Event()
    history = History.from_conf(conf)

    class Blocking:
        def execute(self, request: Request, on_step: Any = None) -> Result:
            started.set()
            assert gate.wait(TIMEOUT)
            result = Result(request.request_id, request.action, request.instance_uuid,
                            HOST, Outcome.SUCCESS)
            history.finish(result)
            return result

    conf.set_override("max_concurrent_flows", 1, group="worker")
    first = Worker(conf, runner=Blocking(), history=history)
    first.start()
    ids = [f"stop-{i}" for i in range(4)]
    _send(conf, *(Request("unrescue", f"00000000-0000-4000-8000-00000000000{i}", rid,
                          host=HOST) for i, rid in enumerate(ids)))
    assert started.wait(TIMEOUT)
    _wait_until(lambda: first.handler.stats["accepted"] == 4)
    first.stop()  # one flow runs; the other three stay recorded
    gate.set()
    first.wait()
    assert first.flows.stats["ran"] == 1
    assert len(History.from_conf(conf).unfinished()) == 3
    second = Worker(conf)
    second.start()
    try:
        done = results.wait_results(4)
    finally:
        second.stop()
        second.wait()
    assert sorted(r["payload"]["request_id"] for r in done) == ids
    assert second.flows.stats["resumed"] == 3
    assert second.handler.stats["received"] == 0  # nothing came back from the queue


def test_the_demo_passes_every_check(capsys) -> None:
    assert demo_loop.run() == 0
    assert "every check passed" in capsys.readouterr().out


def _conf_args(conf: Any, tmp_path: Any) -> list[str]:
    """A config file equal to ``conf`` for what the client reads."""
    return ["--config-file", client_config_file(conf, tmp_path, MEMORY, HOST)]
