#!/usr/bin/env python3
"""Soak: mixed rescue/unrescue requests while the history's storage and the
worker fail at random; every request must end once, with no false quarantine.

    python tools/soak.py [--requests 1000] [--instances 20] [--seed 1]
                         [--workdir DIR] [--json OUT]

A simulated host with ``--instances`` instances, a SQLite history, and a
"worker" child process that runs the requests in order, per instance, four
instances at a time (rescue_flow.engine.scheduler.KeyedScheduler over FlowRunner, as
the worker's FlowQueue does), each request delivered to it again after a kill
(at-least-once, as the broker does). Meanwhile this process, at random
moments, does one of:

- a short storage stall: holds SQLite's write lock for less than
  ``storage_retry_timeout`` (the flow only waits);
- a long storage stall: holds it for longer (the request is left for a
  resume: "history storage unavailable");
- a disk-full window: every statement of the child fails with ENOSPC (a flag
  file the child checks; deterministic, unlike a real full disk);
- a worker kill: SIGKILL of the child, and a fresh one started, which first
  resumes what was unfinished.

No Hyper-V fault is injected, so every request must end ``success`` or
``nothing_to_do``; a ``failed`` or ``quarantined`` one is a false failure.
At the end: every request recorded once and finished, no flow run twice for
one request, no quarantine, and every instance in the state its last request
asked for (the host read through the same adapter as the flows).
Exit 0 when every check passed, 1 otherwise; figures on stdout and in --json.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from typing import Any

RETRY_TIMEOUT = 1.5  # [persistence] storage_retry_timeout, short for the soak
BUSY_TIMEOUT = 0.1
IMAGE = "11111111-1111-4111-8111-111111111111"
FLOWS_AT_ONCE = 4
EXIT_TEMPFAIL = 75
# Each kind of trouble, with its weight and how long it lasts (seconds).
TROUBLE = {"short_stall": (3, (0.2, 0.8)), "long_stall": (2, (2.0, 3.5)),
           "disk_full": (2, (1.0, 3.0)), "kill": (3, (0, 0))}


def _conf(workdir: str) -> Any:
    from rescue_flow import config
    return config.make_conf(overrides={
        "DEFAULT": {"host": "soak", "state_path": os.path.join(workdir, "state")},
        "hyperv": {"driver": "simulated", "instances_path": os.path.join(workdir, "vms"),
                   "soft_shutdown_timeout": 0, "power_state_poll_interval": 0.01},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
        "persistence": {"storage_retry_timeout": RETRY_TIMEOUT,
                        "sqlite_busy_timeout": BUSY_TIMEOUT}})


def _plan(requests: int, instances: int, seed: int) -> tuple[list[str], list[dict]]:
    rng = random.Random(seed)
    uuids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(instances)]
    plan = [{"request_id": f"soak-{index:05d}", "instance_uuid": rng.choice(uuids),
             "action": rng.choice(("rescue", "unrescue"))} for index in range(requests)]
    return uuids, plan


def seed_host(workdir: str, uuids: list[str]) -> None:
    from rescue_flow.simhost import SimulatedHost
    conf = _conf(workdir)
    sim = SimulatedHost.init(conf.simulated.state_file, conf.hyperv.instances_path)
    sim.add_image(IMAGE, 1, "vhd")
    for index, instance_uuid in enumerate(uuids, 1):
        sim.add_vm(f"instance-{index:08x}", instance_uuid, IMAGE, nics=1)


# -- the child: a worker --------------------------------------------------------

def child(workdir: str, plan_file: str) -> int:
    import sqlalchemy as sa

    from rescue_flow import exceptions, hyperv
    from rescue_flow.engine.runner import FlowRunner
    from rescue_flow.engine.scheduler import KeyedScheduler
    from rescue_flow.persistence import schema
    from rescue_flow.persistence.history import History
    from rescue_flow.requests import Request

    conf = _conf(workdir)
    flag = os.path.join(workdir, "disk-full")
    try:
        # As the worker opens it: riding out a database that does not answer yet.
        history = History.from_conf(conf, wait=True)
        unfinished = history.unfinished()
    except exceptions.StorageUnavailable:
        return EXIT_TEMPFAIL  # as a worker would: its service manager restarts it

    @sa.event.listens_for(history.engine, "before_cursor_execute")
    def _disk_full(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if os.path.exists(flag):
            raise sa.exc.OperationalError(statement, None,
                                          OSError(errno.ENOSPC, "No space left on device"))

    runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), history)
    with open(plan_file, encoding="utf-8") as handle:
        plan = json.load(handle)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def wait_writable() -> None:
        delay = 0.05
        while True:
            try:
                history.ping()
                return
            except Exception:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def until_done(first: Any, request_id: str) -> None:
        action = first
        while True:
            try:
                action()
                return
            except exceptions.StorageUnavailable as exc:
                with lock:
                    counts["storage_unavailable"] += 1
                    with open(os.path.join(workdir, "left-for-resume"), "ab") as log:
                        log.write(b"x")
                wait_writable()
                if exc.recorded:
                    action = lambda: resume(request_id)  # noqa: E731

    def resume(request_id: str) -> None:
        record = history.get(request_id)
        if record is not None and record.state != schema.FINISHED:
            runner.resume(record)

    for record in unfinished:  # as the worker does at start
        until_done(lambda r=record: resume(r.request.request_id), record.request.request_id)
    scheduler = KeyedScheduler(FLOWS_AT_ONCE, name="soak")
    for item in plan:
        request = Request(item["action"], item["instance_uuid"], item["request_id"],
                          image_id=IMAGE if item["action"] == "rescue" else None,
                          host="soak")
        scheduler.submit(request.instance_uuid, until_done,
                         lambda r=request: runner.handle(r), request.request_id)
    scheduler.wait_idle()
    scheduler.shutdown()
    print(json.dumps(dict(counts)), flush=True)
    return 0


# -- the parent: trouble, then the checks --------------------------------------

class Trouble:
    def __init__(self, workdir: str, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.database = os.path.join(workdir, "state", "rescue-flow.sqlite")
        self.counts: Counter[str] = Counter()

    def stall(self, seconds: float) -> None:
        connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock, held
            time.sleep(seconds)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    def disk_full(self, seconds: float) -> None:
        flag = os.path.join(self.workdir, "disk-full")
        open(flag, "wb").close()
        try:
            time.sleep(seconds)
        finally:
            os.remove(flag)

    def one(self) -> str:
        kinds = list(TROUBLE)
        kind = self.rng.choices(kinds, weights=[TROUBLE[k][0] for k in kinds])[0]
        low, high = TROUBLE[kind][1]
        seconds = self.rng.uniform(low, high)
        if kind in ("short_stall", "long_stall"):
            self.stall(seconds)
        elif kind == "disk_full":
            self.disk_full(seconds)
        self.counts[kind] += 1
        return kind


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    workdir = args.workdir or tempfile.mkdtemp(prefix="rescue-flow-soak-")
    uuids, plan = _plan(args.requests, args.instances, args.seed)
    plan_file = os.path.join(workdir, "plan.json")
    with open(plan_file, "w", encoding="utf-8") as handle:
        json.dump(plan, handle)
    seed_host(workdir, uuids)
    rng = random.Random(args.seed + 1)
    trouble = Trouble(workdir, rng)
    started = time.monotonic()
    children = restarts = 0
    while True:
        children += 1
        process = subprocess.Popen(
            [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--child",
             "--workdir", workdir], stdout=subprocess.PIPE, text=True)
        killed = False
        while process.poll() is None:
            time.sleep(rng.uniform(0.2, args.mean_gap * 2))
            if process.poll() is not None:
                break
            if trouble.one() == "kill":
                process.send_signal(signal.SIGKILL)
                killed = True
                break
        process.communicate()
        if not killed and process.returncode == 0:
            break
        if process.returncode == EXIT_TEMPFAIL:
            restarts += 1
            continue
        if not killed:
            raise SystemExit(f"soak: the worker child failed (exit {process.returncode})")
    seconds = time.monotonic() - started
    return check(workdir, uuids, plan, {
        "requests": args.requests, "instances": args.instances, "seed": args.seed,
        "seconds": round(seconds, 1), "worker_processes": children,
        "restarts_storage_down_at_start": restarts,
        "trouble": dict(trouble.counts),
        "requests_left_for_resume": _size(os.path.join(workdir, "left-for-resume")),
        "storage_retry_timeout": RETRY_TIMEOUT, "workdir": workdir})


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def check(workdir: str, uuids: list[str], plan: list[dict], figures: dict) -> dict:
    from rescue_flow import hyperv
    from rescue_flow.engine.quarantine import QuarantineList
    from rescue_flow.persistence import schema
    from rescue_flow.persistence.history import History
    from rescue_flow.tasks import observe

    conf = _conf(workdir)
    history = History.from_conf(conf)
    records = {record.request.request_id: record
               for record in history.recent(limit=len(plan) * 2 + 10)}
    outcomes = Counter(record.outcome for record in records.values())
    problems = []
    if set(records) != {item["request_id"] for item in plan}:
        problems.append(f"{len(records)} requests recorded for {len(plan)} sent")
    unfinished = [rid for rid, record in records.items() if record.state != schema.FINISHED]
    if unfinished:
        problems.append(f"unfinished: {unfinished[:5]}")
    bad = {rid: record.outcome for rid, record in records.items()
           if record.outcome not in ("success", "nothing_to_do")}
    if bad:
        problems.append(f"false failures: {dict(list(bad.items())[:5])}")
    twice = []
    for rid, record in records.items():
        flows = Counter(flow for flow, _step, _state in history.steps(record)
                        if _step == "ValidateRescue" or _step == "ValidateUnrescue")
        if any(count > 1 for count in flows.values()):
            twice.append(rid)
    if twice:
        problems.append(f"a flow ran twice for: {twice[:5]}")
    quarantined = QuarantineList(history).all()
    if quarantined:
        problems.append(f"quarantined: {sorted(quarantined)}")
    host = hyperv.get_host(conf)
    last = {item["instance_uuid"]: item["action"] for item in plan}
    wrong = {}
    for instance_uuid in uuids:
        state = observe.observe(host, instance_uuid).state
        expected = {"rescue": observe.RESCUED, "unrescue": observe.ACTIVE}.get(
            last.get(instance_uuid, "unrescue"))
        if state != expected:
            wrong[instance_uuid] = (state, expected)
    if wrong:
        problems.append(f"host state differs from the last request: {wrong}")
    history.close()
    return {**figures, "outcomes": dict(outcomes), "false_quarantines": len(quarantined),
            "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mean-gap", type=float, default=1.5,
                        help="mean seconds between two troubles")
    parser.add_argument("--workdir")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import logging
    import warnings
    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    logging.basicConfig(level=logging.CRITICAL)
    if args.child:
        return child(args.workdir, os.path.join(args.workdir, "plan.json"))
    result = run_soak(args)
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
