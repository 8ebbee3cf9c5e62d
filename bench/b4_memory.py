"""B4: does the worker's memory grow with the flows it has run?

A child process (so nothing of the benchmark runner is counted) builds the
runner exactly as :class:`rescue_flow.service.worker.Worker` does
(``FlowRunner.from_conf(conf, hyperv.get_host(conf), History.from_conf(conf))``,
durable SQLite history) on a zero-latency simulated host, and handles
rescue and unrescue requests in turn through it (the worker's runner, not
the broker), on 4 instances. It reads its VmRSS (after a gc) at
checkpoints; the verdict compares 100 and 5,000 flows: growth <= 10 MiB.

The state folder (simulated host and history) is put in /dev/shm when it
exists: memory is what is measured, and without fsyncs 5,000 flows take
minutes instead of ten.

FACTS.md: SQLAlchemy 2.1 leaks megabytes per flow through TaskFlow's SQL
backend; the installed version is reported with the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from bench import harness

GOAL = 10.0
GOAL_TEXT = f"RSS growth from 100 to 5,000 flows <= {GOAL:g} MiB"
INSTANCES = 4


def child(folder: str, checkpoints: list[int]) -> None:
    from rescue_flow import hyperv
    from rescue_flow.engine.runner import FlowRunner
    from rescue_flow.persistence.history import History
    from rescue_flow.requests import Request

    conf = harness.make_conf(folder)
    _sim, uuids = harness.seed_host(conf, INSTANCES)
    runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), History.from_conf(conf))
    flows, began = 0, time.perf_counter()
    with harness.quiet():
        for target in checkpoints:
            while flows < target:
                instance = uuids[(flows // 2) % INSTANCES]
                action = "rescue" if flows % 2 == 0 else "unrescue"
                image = harness.IMAGE if action == "rescue" else None
                result = runner.handle(Request(action, instance, harness.new_request_id(),
                                               image_id=image))
                assert result.outcome.ok, result
                flows += 1
            gc.collect()
            print(json.dumps({"flows": flows, "rss_mib": round(harness.rss_mib(), 2),
                              "seconds": round(time.perf_counter() - began, 1)}),
                  flush=True)


def run(ctx: harness.Context) -> dict[str, Any]:
    checkpoints = [20, 100, 150] if ctx.quick else [100, 500, 1000, 2000, 3000, 4000, 5000]
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else ctx.workdir
    with tempfile.TemporaryDirectory(prefix="rescue-flow-b4-", dir=base) as folder:
        process = subprocess.run(
            [sys.executable, "-m", "bench.b4_memory", "--child", folder,
             ",".join(map(str, checkpoints))],
            capture_output=True, text=True, timeout=1200, check=False,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if process.returncode != 0:
        raise RuntimeError(f"B4 child failed ({process.returncode}): "
                           f"{process.stderr[-2000:]}")
    points = [json.loads(line) for line in process.stdout.splitlines()
              if line.startswith("{")]
    rss = {point["flows"]: point["rss_mib"] for point in points}
    first = 100 if 100 in rss else checkpoints[0]
    last = checkpoints[-1]
    growth = rss[last] - rss[first]
    per_1000 = growth / (last - first) * 1000
    return {
        "checkpoints": points,
        "rss_mib_at": {str(first): rss[first], str(last): rss[last]},
        "growth_mib": round(growth, 2),
        "growth_mib_per_1000_flows": round(per_1000, 3),
        "via": "the worker's runner (FlowRunner + durable History), in a child process",
        "state_folder": "tmpfs (/dev/shm)" if base == "/dev/shm" else "disk",
        "sqlalchemy": metadata.version("SQLAlchemy"),
        "ratio": round(growth, 2),
        "goal": f"RSS growth from {first} to {last:,} flows <= {GOAL:g} MiB",
        "met": harness.verdict(growth, GOAL),
        "summary": f"{rss[first]:.1f} MiB at {first}, {rss[last]:.1f} MiB at {last:,} "
                   f"(+{growth:.1f} MiB; SQLAlchemy {metadata.version('SQLAlchemy')})",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "CHECKPOINTS"),
                        required=True)
    args = parser.parse_args()
    child(args.child[0], [int(n) for n in args.child[1].split(",")])
