"""Delivery on a real RabbitMQ: Nova's samples as Nova publishes them, two
hosts, a host whose worker is down, a broker restart, and the client.

Workers run in this process on simulated hosts; every exchange, topic, pool
and queue is named after ``unique_name`` and deleted afterwards, except
Nova's exchange ``nova`` (Nova's own name, declared as Nova declares it:
not durable).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import kombu
import pytest
from msgkit import (
    GEN1_IMAGE,
    GEN2_IMAGE,
    ResultLog,
    broker_names,
    delete_broker_objects,
    drain_queue,
    legacy_event,
    make_conf,
    nova_context,
    publishing_as_nova,
    queue_depth,
    seed_host,
    versioned_event,
)

from rescue_flow.messaging.client import Client
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.service.worker import Worker

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30
# Reconnect fast after the broker comes back (defaults back off to 30 s).
FAST_RECONNECT = {"rabbit_retry_interval": 1, "rabbit_retry_backoff": 0,
                  "rabbit_interval_max": 1}


@pytest.fixture
def site(rabbit_url, rabbit_amqp_url, unique_name, tmp_path) -> Iterator[Callable[..., Any]]:
    """``site(host, **groups)`` -> conf of a seeded simulated host on the broker;
    ``site.start(conf, runner=None)`` -> a started worker. All cleaned up."""
    confs: list[Any] = []
    workers: list[Worker] = []

    def make(host: str, **groups: Any) -> Any:
        folder = tmp_path / host
        conf = make_conf(str(folder), host, rabbit_url, unique_name, **groups)
        for name, value in FAST_RECONNECT.items():
            conf.set_override(name, value, group="oslo_messaging_rabbit")
        confs.append(conf)
        return conf

    def start(conf: Any, runner: Any = None) -> Worker:
        worker = Worker(conf, runner=runner)
        worker.start()
        workers.append(worker)
        return worker

    make.start = start  # type: ignore[attr-defined]
    yield make
    for worker in workers:
        worker.stop()
        worker.wait()
    for conf in confs:
        queues, exchanges = broker_names(conf, [c.host for c in confs])
        delete_broker_objects(rabbit_amqp_url, queues, exchanges)


def test_novas_samples_published_as_nova_publishes_them_rescue_and_unrescue(
        site, rabbit_amqp_url) -> None:
    conf = site("hv-int-1")
    sim, (gen1, gen2) = seed_host(conf)
    before = sim.view()
    site.start(conf)
    with ResultLog(conf) as results, _nova_tap(rabbit_amqp_url, conf) as tap:
        events = [
            (versioned_event("instance-rescue-start.json", gen1, conf.host, GEN1_IMAGE,
                             "pre_shares_2024.1"), False),
            (legacy_event("rescue", gen2, conf.host, GEN2_IMAGE), True),
            (versioned_event("instance-unrescue-start.json", gen1, conf.host, None), False),
            (legacy_event("unrescue", gen2, conf.host, GEN2_IMAGE), True),
        ]
        for count, ((event_type, payload, nova_request), legacy) in enumerate(events, 1):
            with publishing_as_nova(conf, conf.host, legacy=legacy) as nova:
                nova.info(nova_context(nova_request), event_type, payload)
            result = results.wait_results(count, TIMEOUT)[-1]
            assert result["payload"]["outcome"] == "success", result
            assert result["publisher_id"] == f"rescue-flow:{conf.host}"
            if count == 2:  # both rescued: each rescue VM runs on the host
                vms = sim.view()["vms"]
                assert vms["instance-00000001-rescue"]["power_state"] == "running"
                assert vms["instance-00000002-rescue"]["power_state"] == "running"
        wire = tap.drain()
    assert sim.view() == before
    # What crossed Nova's exchange is what nova-compute sends.
    assert [m["oslo.version"] for m in wire] == ["2.0"] * 4
    assert [_inner(m)["publisher_id"] for m in wire] == [
        f"nova-compute:{conf.host}", f"compute.{conf.host}"] * 2


def test_two_hosts_each_request_is_handled_once_by_its_own_host(site) -> None:
    confs = [site("hv-int-a"), site("hv-int-b")]
    instances = {conf.host: seed_host(conf, vms=3)[1] for conf in confs}
    workers = {conf.host: site.start(conf) for conf in confs}
    sent = {}
    with ResultLog(confs[0]) as results:
        with publishing_as_nova(confs[0], "any") as nova:
            for host, uuids in instances.items():
                for instance_uuid in uuids:
                    image = GEN1_IMAGE if uuids.index(instance_uuid) % 2 == 0 else GEN2_IMAGE
                    event_type, payload, nova_request = versioned_event(
                        "instance-rescue-start.json", instance_uuid, host, image)
                    nova.info(nova_context(nova_request), event_type, payload)
                    sent[f"nova:{nova_request}:rescue:{instance_uuid}"] = host
        done = results.wait_results(len(sent), TIMEOUT)
        # Anything more (a second copy, a duplicate) would have arrived by now.
        _drain_quietly(results, 1.0)
    by_request = {r["payload"]["request_id"]: r for r in results.results()}
    assert len(results.results()) == len(sent) == len(by_request)
    for request_id, host in sent.items():
        assert by_request[request_id]["publisher_id"] == f"rescue-flow:{host}"
        assert by_request[request_id]["payload"]["outcome"] == "success"
    for host, worker in workers.items():
        assert worker.flows.stats["ran"] == len(instances[host])
        assert worker.handler.stats["duplicates"] == 0
    assert {r["payload"]["host"] for r in done} == set(instances)


def test_a_request_waits_in_its_hosts_queue_until_the_worker_starts(
        site, rabbit_amqp_url) -> None:
    conf = site("hv-int-late")
    _, (gen1, _) = seed_host(conf)
    client = Client(conf)
    try:
        client.send(Request("rescue", gen1, "late-1", host=conf.host, image_id=GEN1_IMAGE))
    finally:
        client.close()
    queue = f"{conf.worker.requests_topic}.{conf.host}.info"
    assert queue_depth(rabbit_amqp_url, queue) == 1  # kept while nobody listens
    with ResultLog(conf) as results:
        site.start(conf)
        assert results.result_for("late-1", TIMEOUT)["payload"]["outcome"] == "success"
    assert queue_depth(rabbit_amqp_url, queue) == 0


class CountingRunner:
    """The real runner, counting how often each request ran."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.history = runner.history
        self.runs: dict[str, int] = {}

    def execute(self, request: Request, on_step: Any = None) -> Any:
        self.runs[request.request_id] = self.runs.get(request.request_id, 0) + 1
        return self.runner.execute(request, on_step=on_step)


def test_a_broker_restart_during_many_requests_loses_none_and_runs_none_twice(
        site, rabbit_amqp_url) -> None:
    how, disrupt = _broker_disruption(rabbit_amqp_url)
    conf = site("hv-int-restart", nova={"enabled": False})
    sim, uuids = seed_host(conf, vms=8)
    sim.set_latency("create_vm", 0.15)
    sim.set_latency("soft_shutdown_vm", 0.1)
    from rescue_flow.engine.runner import FlowRunner
    runner = CountingRunner(FlowRunner.durable(conf))
    worker = site.start(conf, runner)
    sent = []
    client = Client(conf)
    try:
        for round_ in ("rescue", "unrescue", "rescue"):
            for instance_uuid in uuids:
                request_id = f"{round_}-{len(sent)}-{uuid.uuid4().hex[:6]}"
                client.send(Request(round_, instance_uuid, request_id, host=conf.host))
                sent.append(request_id)
    finally:
        client.close()
    _wait_until(lambda: worker.flows.stats["ran"] >= 4, "a few flows before the restart")
    assert worker.flows.stats["ran"] < len(sent) - 8, "too fast to restart in the middle"
    disrupt()
    _wait_until(lambda: all(_finished(worker, rid) for rid in sent),
                f"every request finished after the broker {how}", timeout=90)
    assert {rid: runner.runs.get(rid) for rid in sent} == dict.fromkeys(sent, 1)
    # A copy the broker gave back after the restart (if any) was recorded
    # already and skipped, not run: runs above are all 1.
    # Every copy the broker gave back was acknowledged: stopping the worker
    # returns nothing to the queue that a restarted worker would replay.
    worker.stop()
    worker.wait()
    assert queue_depth(rabbit_amqp_url, f"{conf.worker.requests_topic}.{conf.host}.info") == 0
    # The results, kept in the durable queues the worker's publisher declared.
    results = [m for p in ("info", "error") for m in drain_queue(
        rabbit_amqp_url, f"{conf.worker.results_topic}.{p}")]
    outcomes = {m["payload"]["request_id"]: m["payload"]["outcome"] for m in results}
    assert outcomes == dict.fromkeys(sent, "success")
    assert all(vm.endswith("-rescue") or vm.startswith("instance-")
               for vm in sim.view()["vms"])
    assert sum(vm.endswith("-rescue") for vm in sim.view()["vms"]) == len(uuids)


def test_client_wait_on_rabbitmq_exits_0_on_success_and_1_with_the_reason(
        site, tmp_path) -> None:
    conf = site("hv-int-cli")
    sim, (gen1, gen2) = seed_host(conf)
    site.start(conf)
    args = _cli_args(conf, tmp_path)

    ok = _cli(*args, "rescue", gen1, "--host", conf.host, "--wait", "--timeout", "30")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "StartRescueVM: SUCCESS" in ok.stdout
    assert f"rescue {gen1}: success" in ok.stdout

    sim.set_fault("create_nic", "permanent")
    failed = _cli(*args, "rescue", gen2, "--host", conf.host, "--wait", "--timeout", "30")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "CopyNetworkIdentity: FAILURE" in failed.stdout
    assert "CopyNetworkIdentity failed: create_nic failed" in failed.stdout
    assert "reverted: CopyNetworkIdentity" in failed.stdout


def test_sigterm_lets_the_running_flow_finish_and_the_next_start_runs_the_recorded_rest(
        site, rabbit_amqp_url, tmp_path) -> None:
    conf = site("hv-int-sigterm")
    sim, (gen1, gen2) = seed_host(conf)
    sim.set_latency("create_vm", 1.0)  # time to signal while the flow runs
    path = _worker_config_file(conf, tmp_path, "max_concurrent_flows = 1\n"
                                                "notify_steps = true\n")
    with ResultLog(conf) as results:
        worker = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-m", "rescue_flow.cli", "--config-file",
             str(path), "worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            client = Client(conf)
            try:
                client.send(Request("rescue", gen1, "runs", host=conf.host))
                client.send(Request("rescue", gen2, "waits", host=conf.host))
            finally:
                client.close()
            results.wait_for(lambda log: any(
                m["payload"].get("step") == "CreateRescueVM" for m in log.messages), TIMEOUT)
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=TIMEOUT)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, out
        assert results.result_for("runs", TIMEOUT)["payload"]["outcome"] == "success"
    # The waiting request was recorded, and so acknowledged: it is not in the
    # queue but in the history, unfinished, and the next start runs it.
    assert queue_depth(rabbit_amqp_url,
                       f"{conf.worker.requests_topic}.{conf.host}.info") == 0, out
    assert [r.request.request_id for r in History.from_conf(conf).unfinished()] == [
        "waits"], out
    with ResultLog(conf) as results:
        site.start(conf)
        assert results.result_for("waits", TIMEOUT)["payload"]["outcome"] == "success"


def test_a_worker_killed_with_flows_in_flight_finishes_them_all_once_after_a_restart(
        site, tmp_path) -> None:
    conf = site("hv-int-sigkill", nova={"enabled": False})
    sim, uuids = seed_host(conf, vms=6)
    sim.set_latency("create_vm", 0.3)  # flows in flight when the kill comes
    path = _worker_config_file(conf, tmp_path, "max_concurrent_flows = 3\n")
    history = History.from_conf(conf)
    ids = [f"kill-{i}" for i in range(len(uuids))]
    worker = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "rescue_flow.cli", "--config-file",
         str(path), "worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = Client(conf)
        try:
            for request_id, instance_uuid in zip(ids, uuids, strict=True):
                client.send(Request("rescue", instance_uuid, request_id, host=conf.host))
        finally:
            client.close()
        _wait_until(lambda: sum(r.state == "running" for r in history.recent()) >= 2,
                    "flows in flight")
        worker.kill()  # SIGKILL: no goodbye, no acks, no clean-up
        worker.communicate(timeout=TIMEOUT)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert any(r.state != "finished" for r in history.recent()), "killed too late"
    sim.clear_faults()
    site.start(conf)
    _wait_until(lambda: all(r.state == "finished" for r in history.recent()) and
                len(history.recent()) == len(ids), "every request finished", timeout=60)
    for record in history.recent():
        assert record.outcome == "success", record
        steps = [step for _flow, step, _state in history.steps(record)]
        assert steps.count("ValidateRescue") == 1, (record.request.request_id, steps)
    vms = sim.view()["vms"]
    assert sorted(name for name in vms if name.endswith("-rescue")) == sorted(
        f"{name}-rescue" for name in vms if not name.endswith("-rescue"))
    assert all(vm["power_state"] == "running" for name, vm in vms.items()
               if name.endswith("-rescue"))


# -- helpers ---------------------------------------------------------------------

def _worker_config_file(conf: Any, tmp_path: Any, worker_options: str) -> Any:
    """A config file for a worker process on ``conf``'s broker and simulated host."""
    path = tmp_path / "worker.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = {conf.transport_url}\nhost = {conf.host}\n"
        f"state_path = {conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {conf.hyperv.instances_path}\n"
        f"[worker]\nexchange = {conf.worker.exchange}\n"
        f"requests_topic = {conf.worker.requests_topic}\n"
        f"results_topic = {conf.worker.results_topic}\n{worker_options}"
        f"[nova]\nenabled = false\n")
    return path


class _Tap:
    def __init__(self, conn: kombu.Connection, queue: kombu.Queue) -> None:
        self.conn, self.queue = conn, queue

    def drain(self) -> list[dict[str, Any]]:
        import json
        channel = self.conn.channel()
        bodies = []
        while (message := channel.basic_get(self.queue.name, no_ack=True)) is not None:
            bodies.append(json.loads(message.body))
        return bodies


class _nova_tap:
    """A queue of our own on Nova's exchange, to see the wire format."""

    def __init__(self, amqp_url: str, conf: Any) -> None:
        self.conn = kombu.Connection(amqp_url)
        exchange = kombu.Exchange(conf.nova.exchange, type="topic", durable=False)
        self.queue = kombu.Queue(
            f"{conf.nova.pool}-tap", exclusive=True,
            bindings=[kombu.binding(exchange, routing_key=f"{t}.info")
                      for t in conf.nova.topics])

    def __enter__(self) -> _Tap:
        self.queue(self.conn.channel()).declare()
        return _Tap(self.conn, self.queue)

    def __exit__(self, *exc_info: Any) -> None:
        self.conn.release()


def _inner(body: dict[str, Any]) -> dict[str, Any]:
    import json
    return json.loads(body["oslo.message"])


def _drain_quietly(results: ResultLog, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    results.wait_for(lambda _: time.monotonic() > deadline, seconds + 5)


def _finished(worker: Worker, request_id: str) -> bool:
    record = worker.history.get(request_id)
    return record is not None and record.state == "finished"


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _broker_disruption(amqp_url: str) -> tuple[str, Callable[[], None]]:
    """Restart the broker application when the node is ours to restart (CI's
    private node: RABBITMQ_NODENAME is set, or RESCUE_FLOW_RABBIT_RESTARTABLE);
    otherwise close every client connection server-side, which is what the
    clients see of a restart without touching someone else's broker."""
    def fail_or_skip(reason: str) -> None:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)

    if shutil.which("rabbitmqctl") is None:
        fail_or_skip("rabbitmqctl is not on PATH: cannot disrupt the broker")
    port = urlparse(amqp_url).port or 5672
    listeners = subprocess.run(["rabbitmq-diagnostics", "-q", "listeners"],
                               capture_output=True, text=True, timeout=60, check=False)
    if f"port: {port}, protocol: amqp" not in listeners.stdout:
        fail_or_skip(f"the node rabbitmqctl reaches does not serve port {port}: "
                     f"{listeners.stdout or listeners.stderr}")

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)

    if os.environ.get("RABBITMQ_NODENAME") or os.environ.get("RESCUE_FLOW_RABBIT_RESTARTABLE"):
        return "restarted", lambda: (ctl("stop_app"), ctl("start_app"))
    return "closed every connection", lambda: ctl("close_all_connections", "test")


def _cli_args(conf: Any, tmp_path: Any) -> list[str]:
    path = tmp_path / "client.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = {conf.transport_url}\n"
        f"[worker]\nexchange = {conf.worker.exchange}\n"
        f"requests_topic = {conf.worker.requests_topic}\n"
        f"results_topic = {conf.worker.results_topic}\n")
    return ["--config-file", str(path)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "rescue_flow.cli", *args],
                          capture_output=True, text=True, timeout=90, check=False)
