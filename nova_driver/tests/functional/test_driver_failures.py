"""Failures through the rescue-flow driver: Nova shows them, the host is whole.

Faults are the simulated host's (``rescue-flow sim fault``): an os-win call
of one step of the flow fails for good, once. Nova must set ERROR with a
fault naming the step; the host must be exactly as before Nova's request,
the VM powered as it was (the driver leaves Nova's power-off to the flow).
"""

from __future__ import annotations

import time
from typing import Any

from driver_harness import RescueFlowDriverTestCase
from nova.compute import power_state

# One os-win call inside each step of the rescue flow (Gen2, one NIC), and
# which of that method's calls, counted from when the fault is armed: a
# call made after the step has changed something where it can, so that its
# revert has work to do. (tests/functional/test_fault_matrix.py in the
# worker's suite fails every call at every position; this is Nova's view.)
RESCUE_STEP_FAULTS = [
    ("ValidateRescue", "get_vm_generation", 0),
    # SnapshotConfig makes no os-win call: it records what ValidateRescue read.
    ("StopInstance", "get_vm_state", 0),           # the poll: the VM is off by then
    ("CreateRescueDisk", "create_differencing_vhd", 0),
    ("CreateRescueVM", "create_scsi_controller", 0),  # the VM exists by then
    ("AttachRescueDisk", "set_boot_order", 0),     # the disk is attached by then
    ("DetachRootDisk", "detach_vm_disk", 0),
    ("AttachRootDiskToRescueVM", "attach_drive", 1),
    ("CopyNetworkIdentity", "connect_vnic_to_vswitch", 0),  # the NIC exists by then
    ("StartRescueVM", "set_vm_state", 0),
]


class RescueFailureTest(RescueFlowDriverTestCase):

    def test_a_failure_in_any_rescue_step_is_nova_error_naming_it_and_the_host_as_before(
            self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        problems = []
        for step, method, after in RESCUE_STEP_FAULTS:
            self.sim.fault(method, "permanent", after=after, times=1)
            self.rescue(server)
            nova = self.wait_for_nova(server, "ERROR")
            self.sim.clear_faults()
            host = self.sim.view()
            where = f"fault in {method} #{after} ({step})"
            print(f"{where}: Nova {nova}")
            if nova["vm_state"] != "error" or nova["power_state"] != power_state.RUNNING:
                problems.append(f"{where}: Nova shows {nova}")
            if not nova["fault"] or step not in nova["fault"]:
                problems.append(f"{where}: the fault does not name {step}: {nova['fault']!r}")
            if host != before:
                problems.append(f"{where}: the host differs from before the rescue")
            # `openstack server set --state active`: Nova and the host agree again.
            self.reset_to_active(server)
            self.wait_for_nova(server, "ACTIVE")
        assert not problems, "\n".join(problems)
        outcomes = [r["outcome"] for r in self.requests_for(server, "rescue")]
        assert len(outcomes) == len(RESCUE_STEP_FAULTS), outcomes
        assert set(outcomes) <= {"failed", "refused"}, outcomes
        # And a rescue without a fault works after all of them.
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")
        assert self.host_vm(server, rescue=True)["power_state"] == "running"

    def test_a_failed_unrescue_is_nova_error_and_the_instance_stays_rescued(self) -> None:
        server = self.boot_server()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")
        rescued = self.sim.view()
        # Moving the root disk back to the instance fails.
        self.sim.fault("attach_drive", "permanent", times=1)

        self.unrescue(server)

        nova = self.wait_for_nova(server, "ERROR")
        assert "AttachRootDiskToInstance" in (nova["fault"] or ""), nova
        assert self.sim.view() == rescued  # still rescued, and working


class WorkerUnavailableTest(RescueFlowDriverTestCase):

    def test_with_the_worker_down_a_rescue_fails_fast_and_nothing_happens_later(
            self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        self.worker.stop()

        started = time.monotonic()
        self.rescue(server)
        nova = self.wait_for_nova(server, "ERROR")
        took = time.monotonic() - started

        assert took < 10, f"took {took:.1f}s"
        assert "rescue-flow worker" in (nova["fault"] or ""), nova
        assert nova["power_state"] == power_state.RUNNING, nova
        assert self.sim.view() == before
        # Nova's rescue notifications of that action wait on the broker; the
        # worker, back, must not act on them: Nova said ERROR, the host stays.
        self.worker.start()
        time.sleep(2.0)
        assert self.sim.view() == before, "the worker acted on the failed action later"
        ran = [r for r in self.requests_for(server) if r.get("outcome") == "success"]
        assert not ran, ran


class WorkerKilledTest(RescueFlowDriverTestCase):

    def test_a_worker_killed_mid_rescue_and_restarted_ends_with_nova_and_host_agreeing(
            self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        # Hold the flow in CreateRescueVM, after the instance was stopped.
        self.sim.latency("create_vm", 5.0)
        self.rescue(server)
        self._wait_until(lambda: self.host_vm(server)["power_state"] == "off",
                         "the flow stopped the instance")
        time.sleep(0.5)  # inside create_vm's latency now

        self.worker.kill()
        self.sim.clear_faults()
        self.worker.start()

        deadline = time.monotonic() + 45
        while self.nova_view(server)["task_state"] is not None:
            assert time.monotonic() < deadline, self.nova_view(server)
            time.sleep(0.2)
        nova = self.nova_view(server)
        host = self.sim.view()
        print(f"after the restart: Nova {nova}")
        if nova["status"] == "RESCUE":
            assert self.host_vm(server, host, rescue=True)["power_state"] == "running"
            assert self.host_vm(server, host)["power_state"] == "off"
        else:
            assert nova["status"] == "ERROR", nova
            assert host == before
        [request] = self.requests_for(server, "rescue")
        assert request["state"] == "finished", request

    def _wait_until(self, condition: Any, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            time.sleep(0.1)
