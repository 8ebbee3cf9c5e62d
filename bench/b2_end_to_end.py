"""B2: from Nova's notification to the rescue VM running, on a real broker.

A :class:`rescue_flow.service.worker.Worker` (Nova intake on, default settings)
runs on RabbitMQ against a simulated host that costs what WMI costs: the
documented cost profile (``sim profile wmi``, docs/simulated-host.md), in
which every call is priced, reads too, and host-wide queries grow with the
number of VMs. For each sample, one ``instance.rescue.start``
notification is published as nova-compute does (Nova's exchange, envelope
2.0, a real Nova sample rewritten for the instance; ``rescue_flow.commands.demo_loop``'s
helpers), and the clock runs from just before the publish until a poller
sees the rescue VM ``running`` in the simulated host's state (every 5 ms;
the result notification's arrival is reported too). Nothing is subtracted.

The baseline is the sum of what the calls the request actually made cost
(each call's ``cost`` in the host's call log), so it is exactly the time a
request would take if everything but Hyper-V cost nothing. Samples run one
at a time, one fresh instance each. Goal: measured / baseline <= 1.05 at
p50 and <= 1.10 at p99.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from oslo_context.context import RequestContext

from bench import harness
from rescue_flow import layout
from rescue_flow.commands import demo_loop
from rescue_flow.messaging import nova
from rescue_flow.messaging.client import ResultWatcher
from rescue_flow.service.worker import Worker

GOAL_P50, GOAL_P99 = 1.05, 1.10
GOAL = f"measured / sum of injected latencies on the path: p50 <= {GOAL_P50}, p99 <= {GOAL_P99}"
GOAL_TEXT = GOAL
HOST = "hv-b2"
PROFILE = "wmi"
SAMPLE = "instance-rescue-start.json"


def wait_running(sim: Any, vm_name: str, timeout: float, poll: float = 0.005) -> float:
    """perf_counter() at which ``vm_name`` was first seen running."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        vm = sim.view()["vms"].get(vm_name)
        if vm is not None and vm["power_state"] == "running":
            return time.perf_counter()
        time.sleep(poll)
    raise TimeoutError(f"{vm_name} was not running after {timeout} s")


def one_sample(worker_conf: Any, sim: Any, notifier: Any, index: int,
               instance_uuid: str, scale: float) -> dict[str, Any]:
    event_type, payload, nova_request_id = demo_loop.versioned_event(
        SAMPLE, instance_uuid, HOST, harness.IMAGE)
    request = nova.parse({"event_type": event_type, "payload": payload},
                         {"request_id": nova_request_id})
    assert request is not None
    rescue_vm = layout.rescue_vm_name(f"instance-{index + 1:08x}")
    sim.clear_calls()
    running: dict[str, float] = {}
    poller = threading.Thread(
        target=lambda: running.setdefault("at", wait_running(sim, rescue_vm, 60 * scale + 30)))
    with ResultWatcher(worker_conf) as watcher:
        poller.start()
        began = time.perf_counter()
        notifier.info(RequestContext(request_id=nova_request_id), event_type, payload)
        result = watcher.wait(request.request_id, timeout=60 * scale + 30)
        result_at = time.perf_counter()
        poller.join()
    assert result.outcome.ok, result
    path = harness.cost_of_calls(sim.calls())
    measured = running["at"] - began
    return {"seconds": measured, "path_seconds": path, "ratio": measured / path,
            "result_seconds": result_at - began, "calls": len(sim.calls())}


def run(ctx: harness.Context) -> dict[str, Any]:
    assert ctx.rabbit_url is not None
    samples, scale = (3, 0.25) if ctx.quick else (12, 1.0)
    names = f"rf-bench-b2-{uuid.uuid4().hex[:8]}"
    conf = harness.make_conf(ctx.folder("b2"), host=HOST, url=ctx.rabbit_url, names=names)
    sim, uuids = harness.seed_host(conf, samples + 1)
    sim.set_cost_profile(PROFILE, scale)
    rows = []
    try:
        with harness.quiet():
            worker = Worker(conf)
            worker.start()
            notifier = demo_loop.nova_notifier(conf, f"nova-compute:{HOST}", conf.nova.topics[0])
            try:
                one_sample(conf, sim, notifier, samples, uuids[samples], scale)  # warm-up
                rows = [one_sample(conf, sim, notifier, index, uuids[index], scale)
                        for index in range(samples)]
            finally:
                notifier.transport.cleanup()
                worker.stop()
                worker.wait()
    finally:
        queues, exchanges = harness.broker_names(conf, [HOST])
        queues.append(f"{conf.nova.topics[0]}.info")
        harness.delete_broker_objects(ctx.rabbit_url, queues, exchanges)
    ratios = [row["ratio"] for row in rows]
    p50, p99 = harness.percentile(ratios, 50), harness.percentile(ratios, 99)
    overhead = [row["seconds"] - row["path_seconds"] for row in rows]
    return {
        "samples": samples,
        "latency_scale": scale,
        "cost_profile": f"{PROFILE} x {scale:g} ({samples + 1} instances seeded)",
        "path_latency_s": round(rows[0]["path_seconds"], 3),
        "calls_per_rescue": rows[0]["calls"],
        "publish_to_running_ms": harness.summary([row["seconds"] for row in rows]),
        "publish_to_result_ms": harness.summary([row["result_seconds"] for row in rows]),
        "overhead_ms": harness.summary(overhead),
        "ratio_p50": round(p50, 4),
        "ratio_p99": round(p99, 4),
        "ratio": round(p50, 4),
        "goal": GOAL,
        "met": bool(p50 <= GOAL_P50 and p99 <= GOAL_P99),
        "summary": f"path {rows[0]['path_seconds']:.2f} s; p50 "
                   f"{harness.percentile([r['seconds'] for r in rows], 50):.3f} s "
                   f"(x{p50:.3f}), p99 x{p99:.3f}",
    }
