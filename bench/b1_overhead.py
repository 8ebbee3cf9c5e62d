"""B1: what orchestration costs on a host that costs nothing.

Three ways to do one rescue + unrescue cycle of one instance on a
zero-latency simulated host, interleaved round by round:

- ``script``: a hand-written straight-line script making the same os-win
  calls as the flows, in the same process, with no TaskFlow, no adapter,
  no retries, no lock, no history (the floor: what "the host" costs);
- ``memory``: rescue-flow's runner with TaskFlow's in-memory engine
  (``FlowRunner.from_conf(conf, host)``, no history);
- ``durable``: the same runner with the history on (default SQLite file):
  the request recorded with an fsync, every step persisted.

The script must make the same calls as the flows, or the comparison means
nothing: each variant's call log (``SimulatedHost.calls()``) is compared,
method by method, before timing starts. The simulated host journals each
change it makes (docs/simulated-host.md); that is in all three variants,
and how much of a cycle it is gets reported.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from bench import harness
from rescue_flow import hyperv
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.hyperv.oswin import constants
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.simhost import SimulatedHost, engine, store

GOAL = 2.0
MARKER = "rescue-flow:rescue-vm"
SWITCH = "external"


class StraightLine:
    """Rescue and unrescue as two plain functions of os-win calls.

    It makes the flows' checks too (a step that may run again after a
    crash checks before it acts), so that the call log is identical; a
    person writing this by hand might skip some of them.
    """

    def __init__(self, conf: Any, instance_uuid: str) -> None:
        sim = SimulatedHost(conf.simulated.state_file)
        # Any: the simulated methods' declared signatures include the state.
        self.vm: Any = sim.vmutils
        self.vhd: Any = sim.vhdutils
        self.path: Any = sim.pathutils
        self.net: Any = sim.netutils
        self.base = conf.hyperv.instances_path
        self.uuid = instance_uuid

    def _rescue_disks(self, folder: str) -> list[bool]:
        return [self.path.exists(f"{folder}/root-rescue.vhdx"),
                self.path.exists(f"{folder}/root-rescue.vhd")]

    def _read_config(self, name: str, root: str) -> dict[str, Any]:
        self.vm.get_vm_generation(name)
        memory = self.vm.get_vm_memory_info(name)["Limit"]
        summary = self.vm.get_vm_summary_info(name)
        info = self.vm.get_disk_attachment_info(root, is_physical=False)
        nic = self.vm.get_vm_nic_names(name)[0]
        mac = self.net.get_vnic_mac_address(nic)
        self.net.get_port_by_id(nic, SWITCH)
        return {"name": name, "root": root, "dir": root.rsplit("/", 1)[0],
                "slot": info["controller_slot"], "memory": memory,
                "vcpus": summary["NumberOfProcessors"], "nic": nic,
                "mac": ":".join(mac[i:i + 2] for i in range(0, 12, 2))}

    def rescue(self, request_id: str) -> None:
        vm = self.vm
        # What the runner reads first: the instance, no rescue VM (one
        # listing for both), its disks, no rescue disk left over.
        instance = next(name for name, notes in vm.list_instance_notes()
                        if notes and notes[0] == self.uuid)
        root = vm.get_vm_storage_paths(instance)[0][0]
        folder = root.rsplit("/", 1)[0]
        assert not any(self._rescue_disks(folder))
        # Validation, from what the runner read: the configuration (which
        # is the record), the name, the image.
        record = self._read_config(instance, root)
        rescue = f"{instance}-rescue"
        assert not vm.vm_exists(rescue)
        image = f"{self.base}/_base/{harness.IMAGE}"
        assert self.path.exists(image + ".vhd")  # Gen1: VHD first
        # Stop the instance (validation saw it running), make the rescue
        # disk and VM, move the disks.
        vm.soft_shutdown_vm(instance)
        assert vm.get_vm_state(instance) == constants.HYPERV_VM_STATE_DISABLED
        disk = f"{folder}/root-rescue.vhd"
        self.vhd.create_differencing_vhd(disk, image + ".vhd")
        assert not vm.vm_exists(rescue)
        vm.create_vm(rescue, False, 1, folder,
                     notes=[MARKER, self.uuid, json.dumps(record), request_id])
        vm.update_vm(rescue, record["memory"], 0, record["vcpus"], 0, False, 1.0)
        vm.create_scsi_controller(rescue)
        vm.attach_drive(rescue, disk, vm.get_vm_ide_controller(rescue, 0), 0,
                        drive_type=constants.DISK)
        vm.set_boot_order(rescue, [constants.BOOT_DEVICE_HARDDISK,
                                   constants.BOOT_DEVICE_CDROM,
                                   constants.BOOT_DEVICE_NETWORK,
                                   constants.BOOT_DEVICE_FLOPPY])
        vm.detach_vm_disk(instance, record["root"], is_physical=False)
        # The rescue VM was built empty: the root disk is its first SCSI disk.
        vm.attach_drive(rescue, record["root"], vm.get_vm_scsi_controller(rescue), 0,
                        drive_type=constants.DISK)
        # The instance's network identity, then boot.
        vm.get_vm_nic_names(rescue)
        vm.create_nic(rescue, record["nic"] + "-rescue", record["mac"])
        self.net.connect_vnic_to_vswitch(SWITCH, record["nic"] + "-rescue")
        vm.set_vm_state(rescue, constants.HYPERV_VM_STATE_ENABLED)

    def unrescue(self) -> None:
        vm = self.vm
        # What the runner reads first (one listing: the instance and its
        # rescue VM with the record), and the rescue VM's disks.
        listing = vm.list_instance_notes()
        instance = next(name for name, notes in listing if notes and notes[0] == self.uuid)
        rescue, record = next((name, json.loads(notes[2])) for name, notes in listing
                              if len(notes) >= 3 and notes[0] == MARKER and
                              notes[1] == self.uuid)
        attached = vm.get_vm_storage_paths(rescue)[0]
        assert record["root"] in attached
        disk = next(path for path in (f"{record['dir']}/root-rescue.vhdx",
                                      f"{record['dir']}/root-rescue.vhd")
                    if path in attached)
        # Validation: where the root disk sits, the rescue VM's power state.
        vm.get_disk_attachment_info(record["root"], is_physical=False)
        vm.get_vm_state(rescue)
        # Stop the rescue VM, give the root disk back, start the instance.
        vm.soft_shutdown_vm(rescue)
        assert vm.get_vm_state(rescue) == constants.HYPERV_VM_STATE_DISABLED
        vm.detach_vm_disk(rescue, record["root"], is_physical=False)
        vm.attach_drive(instance, record["root"], vm.get_vm_ide_controller(instance, 0),
                        record["slot"], drive_type=constants.DISK)
        vm.set_vm_state(instance, constants.HYPERV_VM_STATE_ENABLED)
        assert vm.get_vm_state(instance) == constants.HYPERV_VM_STATE_ENABLED
        # Remove the rescue VM and its disk.
        assert vm.vm_exists(rescue)
        vm.destroy_vm(rescue)
        self.path.remove(disk)

    def cycle(self) -> None:
        self.rescue(harness.new_request_id())
        self.unrescue()


def runner_cycle(runner: FlowRunner, instance_uuid: str) -> None:
    for action in ("rescue", "unrescue"):
        image = harness.IMAGE if action == "rescue" else None
        result = runner.handle(Request(action, instance_uuid, harness.new_request_id(),
                                       image_id=image))
        assert result.outcome.ok and not result.leftovers, result


class HostMeter:
    """Time spent inside the simulated host, in journaling its changes
    (``StateStore._commit``) and in fsyncs (of snapshots, now and then)."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(
            lambda: {"host": 0.0, "write": 0.0, "fsync": 0.0, "calls": 0.0,
                     "fsyncs": 0.0, "changes": 0.0})
        self.current = "idle"

    def install(self) -> None:
        meter = self
        invoke, write = engine.Engine.invoke, store.StateStore._commit
        real_os = store.os

        def timed_invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return invoke(self, *args, **kwargs)
            finally:
                bucket = meter.seconds[meter.current]
                bucket["host"] += time.perf_counter() - began
                bucket["calls"] += 1

        def timed_write(self: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            changed = False
            try:
                changed = write(self, *args, **kwargs)
                return changed
            finally:
                bucket = meter.seconds[meter.current]
                bucket["write"] += time.perf_counter() - began
                bucket["changes"] += bool(changed)

        class TimedOs:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_os, name)

            @staticmethod
            def fsync(fd: int) -> None:
                began = time.perf_counter()
                try:
                    real_os.fsync(fd)
                finally:
                    bucket = meter.seconds[meter.current]
                    bucket["fsync"] += time.perf_counter() - began
                    bucket["fsyncs"] += 1

        engine.Engine.invoke = timed_invoke  # type: ignore[method-assign]
        store.StateStore._commit = timed_write  # type: ignore[method-assign]
        store.os = TimedOs()  # type: ignore[assignment]
        self._undo = (invoke, write, real_os)

    def uninstall(self) -> None:
        invoke, write, real_os = self._undo
        engine.Engine.invoke = invoke  # type: ignore[method-assign]
        store.StateStore._commit = write  # type: ignore[method-assign]
        store.os = real_os

    def metered(self, name: str, fn: Any) -> Any:
        def run() -> None:
            self.current = name
            try:
                fn()
            finally:
                self.current = "idle"
        return run


def build(folder: str) -> tuple[Any, SimulatedHost, dict[str, Any], str]:
    conf = harness.make_conf(folder)
    sim, uuids = harness.seed_host(conf, 1)
    host = hyperv.get_host(conf)
    memory = FlowRunner.from_conf(conf, host)
    durable = FlowRunner.from_conf(conf, host, History.from_conf(conf))
    variants = {
        "script": StraightLine(conf, uuids[0]).cycle,
        "memory": lambda: runner_cycle(memory, uuids[0]),
        "durable": lambda: runner_cycle(durable, uuids[0]),
    }
    return conf, sim, variants, uuids[0]


def same_calls(sim: SimulatedHost, variants: dict[str, Any]) -> dict[str, Any]:
    """Each variant's methods in call order; the benchmark stops if they differ."""
    before = sim.view_json()
    logs = {}
    for name, cycle in variants.items():
        sim.clear_calls()
        cycle()
        logs[name] = [call["method"] for call in sim.calls()]
        assert sim.view_json() == before, f"{name} did not leave the host as it found it"
    sim.clear_calls()
    reference = logs["memory"]
    for name, methods in logs.items():
        if methods != reference:
            first = next((i for i, pair in enumerate(zip(methods, reference, strict=False)) if
                          pair[0] != pair[1]), min(len(methods), len(reference)))
            raise AssertionError(
                f"B1: {name} makes other os-win calls than the flows, from call "
                f"{first}: {methods[first:first + 3]} vs {reference[first:first + 3]}")
    return {"calls_per_cycle": len(reference), "identical": True,
            "mutating_calls": None}


def run(ctx: harness.Context) -> dict[str, Any]:
    rounds, warmup = (10, 2) if ctx.quick else (120, 5)
    _conf, sim, variants, _uuid = build(ctx.folder("b1"))
    with harness.quiet():
        calls = same_calls(sim, variants)
        meter = HostMeter()
        meter.install()
        try:
            metered = {name: meter.metered(name, fn) for name, fn in variants.items()}
            times = harness.interleave(metered, rounds, warmup)
        finally:
            meter.uninstall()
    cycles = warmup + rounds
    figures: dict[str, Any] = {}
    for name, seconds in times.items():
        host = {key: value / cycles for key, value in meter.seconds[name].items()}
        median = harness.summary(seconds)["median"]
        figures[name] = {
            "cycle_ms": harness.summary(seconds),
            "host_ms_per_cycle": round(host["host"] * 1000, 3),
            "state_write_ms_per_cycle": round(host["write"] * 1000, 3),
            "fsync_ms_per_cycle": round(host["fsync"] * 1000, 3),
            "fsyncs_per_cycle": round(host["fsyncs"], 1),
            "changes_per_cycle": round(host["changes"], 1),
            "host_share": round(host["host"] * 1000 / median, 3),
            "fsync_share": round(host["fsync"] * 1000 / median, 3),
        }
    med = {name: figures[name]["cycle_ms"]["median"] for name in figures}
    p95 = {name: figures[name]["cycle_ms"]["p95"] for name in figures}
    ratio = med["durable"] / med["memory"]
    calls["mutating_calls"] = figures["script"]["changes_per_cycle"]
    return {
        "variants": figures,
        "call_log": calls,
        "per_flow_overhead_ms": {
            "durable_vs_memory": round((med["durable"] - med["memory"]) / 2, 3),
            "durable_vs_script": round((med["durable"] - med["script"]) / 2, 3),
            "memory_vs_script": round((med["memory"] - med["script"]) / 2, 3),
        },
        "ratios": {
            "durable_vs_memory": round(ratio, 3),
            "durable_vs_memory_p95": round(p95["durable"] / p95["memory"], 3),
            "durable_vs_script": round(med["durable"] / med["script"], 3),
            "durable_vs_script_p95": round(p95["durable"] / p95["script"], 3),
            "memory_vs_script": round(med["memory"] / med["script"], 3),
        },
        "rounds": rounds,
        "summary": f"cycle script {med['script']:.1f} ms, in-memory {med['memory']:.1f} ms, "
                   f"durable {med['durable']:.1f} ms; durable adds "
                   f"{(med['durable'] - med['memory']) / 2:.1f} ms/flow",
        "ratio": round(ratio, 3),
        "goal": f"durable / in-memory TaskFlow (median cycle) <= {GOAL}",
        "met": harness.verdict(ratio, GOAL),
    }
