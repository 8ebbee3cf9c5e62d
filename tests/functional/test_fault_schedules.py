"""Random fault schedules: whatever fails, and however often, the invariants hold.

Hypothesis arms one to three faults (any method the flows call, permanent,
transient or a lost answer, after any number of good calls, for one call or
for good) and runs a rescue, then an unrescue. After each run the host is in one of the states
the design allows, never half-way:

- rescue succeeded: the instance is off and a rescue VM runs with its root disk;
- rescue failed: the host equals the host before, byte for byte;
- unrescue succeeded: the host equals the host before the rescue (leftovers,
  if reported, are removed by the next unrescue);
- unrescue failed: the instance is still rescued, and a clean unrescue works;
- a revert failed: the instance is quarantined and requests for it are refused
  without touching the host.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simsite import BENCH_VM, Bench

from rescue_flow.outcome import Outcome

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("RESCUE_FLOW_HYPOTHESIS_PROFILE", "ci")

METHODS = ["list_instance_notes", "get_vm_storage_paths", "get_vm_state", "set_vm_state",
           "soft_shutdown_vm", "create_differencing_vhd", "create_vm", "update_vm",
           "create_scsi_controller", "attach_drive", "detach_vm_disk", "set_boot_order",
           "create_nic", "connect_vnic_to_vswitch", "destroy_nic", "destroy_vm",
           "remove", "exists", "get_disk_attachment_info", "vm_exists"]

faults = st.lists(
    st.tuples(st.sampled_from(METHODS),
              st.sampled_from(["permanent", "transient", "lost-answer"]),
              st.integers(min_value=0, max_value=6),
              st.sampled_from([1, 2, 3, None])),
    min_size=1, max_size=3, unique_by=lambda fault: fault[0])


def _arm(bench, schedule):
    for method, mode, after, times in schedule:
        bench.site.sim.set_fault(method, mode, after=after, times=times)


def _assert_refused_untouched(bench):
    bench.site.sim.clear_faults()
    bench.site.sim.clear_calls()
    assert bench.run("unrescue").outcome is Outcome.QUARANTINED
    assert bench.site.sim.calls() == []


def _assert_no_quarantine_for_passing_faults(schedule, result):
    # Faults that pass (transient or lost answers, for a few calls) may
    # make a flow fail, but every revert can then be made: no quarantine.
    if all(mode != "permanent" and times is not None for _m, mode, _a, times in schedule):
        assert result.outcome is not Outcome.QUARANTINED, (schedule, result.reason)


def _assert_rescued(bench):
    vms = json.loads(bench.view())["vms"]
    assert vms[BENCH_VM]["power_state"] == "off"
    rescue_vm = vms[BENCH_VM + "-rescue"]
    assert rescue_vm["power_state"] == "running"
    assert any(slot["path"].endswith(("root.vhd", "root.vhdx"))
               for slot in rescue_vm["controllers"]["SCSI 0"].values())


@pytest.mark.slow
@pytest.mark.parametrize(("generation", "nics"), [(1, 2), (2, 1)])
def test_random_fault_schedules_never_leave_a_host_half_way(tmp_path, generation, nics):
    bench = Bench(tmp_path, generation, nics)
    bench.save("active")
    original = bench.view()
    assert bench.run("rescue").outcome is Outcome.SUCCESS
    bench.save("rescued")
    rescued = bench.view()

    @settings(settings.get_profile(PROFILE))
    @given(rescue_faults=faults, unrescue_faults=faults)
    def check(rescue_faults, unrescue_faults):
        bench.restore("active")
        _arm(bench, rescue_faults)
        result = bench.run("rescue")
        _assert_no_quarantine_for_passing_faults(rescue_faults, result)
        if result.outcome is Outcome.QUARANTINED:
            _assert_refused_untouched(bench)
        elif result.outcome is Outcome.SUCCESS:
            bench.site.sim.clear_faults()
            _assert_rescued(bench)
        else:
            assert result.outcome in (Outcome.FAILED, Outcome.REFUSED), result
            assert bench.view() == original

        bench.restore("rescued")
        _arm(bench, unrescue_faults)
        result = bench.run("unrescue")
        _assert_no_quarantine_for_passing_faults(unrescue_faults, result)
        if result.outcome is Outcome.QUARANTINED:
            _assert_refused_untouched(bench)
            return
        bench.site.sim.clear_faults()
        if result.outcome is Outcome.SUCCESS and not result.leftovers:
            assert bench.view() == original
            return
        if result.outcome is not Outcome.SUCCESS:
            assert result.outcome is Outcome.FAILED, result
            assert bench.view() == rescued
        assert bench.run("unrescue").outcome is Outcome.SUCCESS
        assert bench.view() == original

    check()
