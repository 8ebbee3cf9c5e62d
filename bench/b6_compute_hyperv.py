"""B6: rescue-flow against compute-hyperv 16.0.0's own rescue, in one run.

Two simulated hosts seeded alike (one instance, 1 NIC, no config drive, with
``neighbours`` other VMs; both priced by the same WMI cost profile for the
timing), one per side:

- rescue-flow: ``FlowRunner`` with its durable history, in this process;
- compute-hyperv: its real ``vmops`` in a child process of ``.venv-nova``
  (``bench/compute_hyperv_side.py``), os-win pointed at the simulated host;
  a rescue is what Nova's compute manager makes of it (a clean power-off,
  then ``rescue_instance``), an unrescue is ``unrescue_instance``.

Per generation it measures: the os-win calls of one rescue and one
unrescue (reads and changes, from the host's call log: deterministic); the
wall time of a rescue + unrescue cycle, rounds interleaved, as a ratio
(rescue-flow / compute-hyperv, medians); and the single-fault matrix of
both: a clean run's calls, then one run per call position with a permanent
fault on exactly that call, each ending classified by the host it leaves:
as before the request, rescued, unrescued, or anything else. A position
ends right if it leaves the host as before or rescued (rescue), rescued or
unrescued (unrescue). The host is put back to its saved state before every
run. ``check_create_dir`` counts as a read: os-win's is ``exists``, then
``makedirs`` only for a folder that is missing, and every folder it is
asked for exists here.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from typing import Any

from bench import harness
from rescue_flow import hyperv
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.host import read_methods

GOAL = 1.3
GOAL_TEXT = ("cycle wall time rescue-flow / compute-hyperv (median) <= 1.3; reads per "
             "rescue and per unrescue <= compute-hyperv's; rescue-flow's single-fault "
             "matrix 100 %")
NOVA_PYTHON = os.path.join(harness.ROOT, ".venv-nova", "bin", "python")
# Written by make once .venv-nova is complete (python alone may be half-built).
NOVA_READY = os.path.join(harness.ROOT, ".venv-nova", ".installed")
CHILD = os.path.join(harness.ROOT, "bench", "compute_hyperv_side.py")
UUID = "b6b6b6b6-0000-4000-8000-000000000006"
VM = "instance-000000b6"
READS = read_methods() | {"check_create_dir"}
# Rescue VM notes carry the request id, new for every run.
REQUEST_ID = re.compile(r"req-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
# The ends a host is compared with, in order: an unrescue that ends like the
# host before the rescue is "unrescued" (for rescue-flow the two are one).
ORDER = {"rescue": ("as before", "rescued", "unrescued"),
         "unrescue": ("rescued", "unrescued", "as before")}
RIGHT_ENDS = {"rescue": ("as before", "rescued"), "unrescue": ("rescued", "unrescued")}


class ComputeHyperV:
    """The child process that runs compute-hyperv's rescue and unrescue."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [NOVA_PYTHON, "-P", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=harness.ROOT)
        answer = self._ask({"cmd": "setup", **spec})
        if not answer["ok"]:
            raise RuntimeError(f"compute-hyperv side: {answer}")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the compute-hyperv side exited")
        return dict(json.loads(line))

    def run(self, action: str) -> tuple[bool, float]:
        answer = self._ask({"cmd": "run", "action": action})
        return bool(answer["ok"]), float(answer["seconds"])

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


class RescueFlow:
    """rescue-flow's runner on its own host, as the worker builds it."""

    def __init__(self, conf: Any, durable: bool) -> None:
        history = History.from_conf(conf) if durable else None
        self.runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), history)

    def run(self, action: str) -> tuple[bool, float]:
        self.runner.quarantine.remove(UUID)  # a failed revert in the matrix
        began = time.perf_counter()
        result = self.runner.handle(Request(action, UUID, harness.new_request_id(),
                                            image_id=harness.IMAGE
                                            if action == "rescue" else None))
        ok = result.outcome.ok and not result.leftovers
        return ok, time.perf_counter() - began


def seed(folder: str, generation: int, neighbours: int) -> tuple[Any, SimulatedHost]:
    conf = harness.make_conf(folder)
    sim = SimulatedHost.init(conf.simulated.state_file, conf.hyperv.instances_path)
    sim.add_image(harness.IMAGE, generation, "vhdx" if generation == 2 else "vhd")
    sim.add_vm(VM, UUID, harness.IMAGE, nics=1)
    for index in range(neighbours):
        sim.add_vm(f"instance-{index + 1:08x}", harness.instance_uuid(index),
                   harness.IMAGE, nics=1)
    return conf, sim


def counts(calls: list[dict[str, Any]]) -> dict[str, Any]:
    methods = [call["method"] for call in calls]
    reads = sum(1 for method in methods if method in READS)
    return {"calls": len(methods), "reads": reads, "changes": len(methods) - reads,
            "methods": methods}


def view(sim: SimulatedHost) -> str:
    return REQUEST_ID.sub("req-*", sim.view_json())


def _views(side: Any, sim: SimulatedHost) -> dict[str, Any]:
    """A clean rescue and unrescue: the calls of each and the host at each point."""
    active = sim.saved_state()
    views = {"as before": view(sim)}
    found: dict[str, Any] = {}
    rescued = active
    for action, end in (("rescue", "rescued"), ("unrescue", "unrescued")):
        sim.clear_calls()
        ok, _seconds = side.run(action)
        assert ok, f"B6: a clean {action} failed"
        found[action] = counts(sim.calls())
        views[end] = view(sim)
        if action == "rescue":
            rescued = sim.saved_state()
    sim.restore_state(active)
    return {"counts": found, "views": views, "states": {"rescue": active,
                                                        "unrescue": rescued}}


def matrix(side: Any, sim: SimulatedHost, clean: dict[str, Any], action: str,
           stride: int) -> dict[str, Any]:
    """One permanent fault at each call position of ``action`` (every
    ``stride``-th position in a quick run)."""
    methods = clean["counts"][action]["methods"]
    ends: dict[str, int] = {}
    wrong = []
    for index in range(0, len(methods), stride):
        method = methods[index]
        occurrence = methods[:index].count(method)
        sim.restore_state(clean["states"][action])
        sim.set_fault(method, "permanent", after=occurrence, times=1)
        side.run(action)
        sim.clear_faults()
        left = view(sim)
        end = next((name for name in ORDER[action] if clean["views"][name] == left),
                   "other")
        ends[end] = ends.get(end, 0) + 1
        if end not in RIGHT_ENDS[action]:
            wrong.append(f"{method} #{occurrence}: {end}")
    sim.restore_state(clean["states"]["rescue"])
    tried = sum(ends.values())
    right = sum(ends.get(end, 0) for end in RIGHT_ENDS[action])
    return {"positions": tried, "ends": ends, "right": right,
            "right_share": round(right / tried, 3), "wrong": wrong}


def timed(sides: dict[str, tuple[Any, SimulatedHost]], rounds: int
          ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Rescue + unrescue cycles, the sides interleaved round by round: the
    seconds each took, what its os-win calls cost (the call log's ``cost``:
    the host's share of the cycle; the rest is the side's own), and what its
    changes alone cost (the jobs its way of rescuing needs, whatever it
    reads)."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    host: dict[str, list[float]] = {name: [] for name in sides}
    changes: dict[str, list[float]] = {name: [] for name in sides}
    starts = {name: sim.saved_state() for name, (_side, sim) in sides.items()}
    names = list(sides)
    for round_ in range(rounds):
        for name in names[round_ % 2:] + names[:round_ % 2]:
            side, sim = sides[name]
            sim.restore_state(starts[name])
            total = 0.0
            for action in ("rescue", "unrescue"):
                ok, took = side.run(action)
                assert ok, f"B6: {name}'s {action} failed on the cost profile"
                total += took
            seconds[name].append(total)
            calls = sim.calls()
            host[name].append(harness.cost_of_calls(calls))
            changes[name].append(harness.cost_of_calls(
                [call for call in calls if call["method"] not in READS]))
    return seconds, host, changes


def one_generation(ctx: harness.Context, generation: int) -> dict[str, Any]:
    quick = ctx.quick
    neighbours, rounds, scale, stride = (2, 2, 0.05, 4) if quick else (10, 8, 1.0, 1)
    folder = ctx.folder(f"b6-gen{generation}")
    rf_conf, rf_sim = seed(os.path.join(folder, "rescue-flow"), generation, neighbours)
    chv_conf, chv_sim = seed(os.path.join(folder, "compute-hyperv"), generation,
                             neighbours)
    chv = ComputeHyperV({"state_file": chv_conf.simulated.state_file,
                         "instances_path": chv_conf.hyperv.instances_path,
                         "name": VM, "uuid": UUID, "image": harness.IMAGE,
                         "generation": generation})
    try:
        rf_memory = RescueFlow(rf_conf, durable=False)
        sides = {"rescue_flow": (rf_memory, rf_sim), "compute_hyperv": (chv, chv_sim)}
        clean = {name: _views(side, sim) for name, (side, sim) in sides.items()}
        faults = {name: {action: matrix(side, sim, clean[name], action, stride)
                         for action in ("rescue", "unrescue")}
                  for name, (side, sim) in sides.items()}
        for _side, sim in sides.values():
            sim.set_cost_profile("wmi", scale=scale)
        rf_durable = RescueFlow(rf_conf, durable=True)
        seconds, host, changes = timed({"rescue_flow": (rf_durable, rf_sim),
                                        "compute_hyperv": (chv, chv_sim)}, rounds)
    finally:
        chv.close()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "counts": {name: {action: {k: v for k, v in found.items() if k != "methods"}
                          for action, found in clean[name]["counts"].items()}
                   for name in clean},
        "calls": {name: {action: found["methods"]
                         for action, found in clean[name]["counts"].items()}
                  for name in clean},
        "clean_cycle_restores_host": {
            name: clean[name]["views"]["unrescued"] == clean[name]["views"]["as before"]
            for name in clean},
        "matrix": faults,
        "cycle_ms": {name: harness.summary(values) for name, values in seconds.items()},
        "host_cost_ms": {name: round(statistics.median(values) * 1000, 1)
                         for name, values in host.items()},
        "own_ms": {name: round((medians[name] - statistics.median(host[name])) * 1000, 1)
                   for name in medians},
        "changes_cost_ms": {name: round(statistics.median(values) * 1000, 1)
                            for name, values in changes.items()},
        "wall_ratio": round(medians["rescue_flow"] / medians["compute_hyperv"], 3),
        # The floor of the wall ratio for rescue-flow's way of rescuing (a
        # separate rescue VM, DESIGN.md section 1): its changes alone, with
        # no read and no time of its own, over compute-hyperv's whole cycle.
        "changes_only_ratio": round(statistics.median(changes["rescue_flow"])
                                    / medians["compute_hyperv"], 3),
        "rounds": rounds, "neighbours": neighbours,
        "cost_profile": f"wmi x {scale:g}",
    }


def run(ctx: harness.Context) -> dict[str, Any]:
    if not os.path.exists(NOVA_READY):
        return harness.skipped(f"{NOVA_READY} is missing (.venv-nova not built, or "
                               "still building): run 'make venv-nova'", GOAL_TEXT)
    with harness.quiet():
        per_gen = {f"gen{g}": one_generation(ctx, g) for g in (1, 2)}
    ratio = max(r["wall_ratio"] for r in per_gen.values())
    floor = max(r["changes_only_ratio"] for r in per_gen.values())
    reads_ok = all(r["counts"]["rescue_flow"][a]["reads"] <=
                   r["counts"]["compute_hyperv"][a]["reads"]
                   for r in per_gen.values() for a in ("rescue", "unrescue"))
    matrix_ok = all(r["matrix"]["rescue_flow"][a]["right_share"] == 1.0
                    for r in per_gen.values() for a in ("rescue", "unrescue"))
    reads = "; ".join(
        f"{gen} reads rescue {r['counts']['rescue_flow']['rescue']['reads']} vs "
        f"{r['counts']['compute_hyperv']['rescue']['reads']}, unrescue "
        f"{r['counts']['rescue_flow']['unrescue']['reads']} vs "
        f"{r['counts']['compute_hyperv']['unrescue']['reads']}"
        for gen, r in per_gen.items())
    shares = "; ".join(
        f"{gen} matrix {side} " + "/".join(
            f"{r['matrix'][side][a]['right']}/{r['matrix'][side][a]['positions']}"
            for a in ("rescue", "unrescue"))
        for gen, r in per_gen.items() for side in ("rescue_flow", "compute_hyperv"))
    return {
        **per_gen,
        "ratio": ratio,
        "changes_only_ratio": floor,
        "goal": GOAL_TEXT,
        "met_parts": {"wall": harness.verdict(ratio, GOAL), "reads": reads_ok,
                      "matrix": matrix_ok},
        "met": bool(harness.verdict(ratio, GOAL) and reads_ok and matrix_ok),
        "summary": f"cycle ratio {ratio} (worse generation; its changes alone "
                   f"{floor}); {reads}; {shares} "
                   "(right ends / positions, rescue/unrescue)",
    }
