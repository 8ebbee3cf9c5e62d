"""Every os-win call of both flows, at every position, fails once: the host stays whole.

For each scenario a reference run records the calls a successful flow makes.
Then, for each call in turn, the host is put back to its state before the
flow, a fault is armed on exactly that call, and the flow runs again:

- a permanent fault must leave the host equal, byte for byte in the
  simulated host's canonical view, to the host before the flow; the one
  exception is unrescue's clean-up after the instance runs again, which is
  retried until it holds and must end like a clean run;
- a transient fault must be retried and end in the same host as a clean run;
- so must a lost answer (the call took effect, then failed as a transient
  one, as when WMI's connection drops after Hyper-V ran the job): calling
  again blindly would make a second VM or NIC, or fail to remove what is
  gone already.
"""

from __future__ import annotations

import json

import pytest
from simsite import Bench

from rescue_flow.outcome import Outcome
from rescue_flow.simhost import oserrors

CLEANUP_STEPS = ("DestroyRescueVM", "DeleteRescueDisk", "DeleteRescueConfigDrive")
# Before CheckRescueConfigDrive the flow does not own the rescue config drive
# the Nova driver wrote: a failure there leaves the host as it was *with* the
# drive (the driver deletes it on that outcome); from that step on, a revert
# deletes it too.
BEFORE_THE_DRIVE_IS_TAKEN = ("observe", "ValidateRescue", "SnapshotConfig")
# By design, a refused soft shutdown falls back to a hard power-off (as Nova
# does): a permanent fault there must end like a clean run, not in a revert.
ABSORBED_BY_DESIGN = {"soft_shutdown_vm"}
# os-win's exists is os.path.exists, which answers False when Windows fails
# to look: the caller cannot see the fault, so it cannot retry or revert.
# What must hold: the flow ends like a clean run, or is refused or reverted
# with the host as before; never a "success" that leaves something behind.
UNSEEN_FAULTS = {name for name in oserrors.METHODS if oserrors.never_raises(name)}

# The last field: the rescue config drive each rescue brings (None: none, as
# a manual request or a notification).
SCENARIOS = [
    pytest.param(1, 0, None, id="gen1-no-nics"),
    pytest.param(1, 2, "iso", id="gen1-2-nics-iso-drive"),
    pytest.param(2, 0, "vhd", id="gen2-no-nics-vhd-drive"),
    pytest.param(2, 2, "iso", id="gen2-2-nics-iso-drive"),
]


def _check_positions(bench, action, mode, positions, start, start_view, clean_end,
                     original, start_view_with_drive=None):
    problems = []
    for method, occurrence, step in positions:
        before = start_view_with_drive \
            if start_view_with_drive and step in BEFORE_THE_DRIVE_IS_TAKEN else start_view
        bench.restore(start)
        bench.site.sim.set_fault(method, mode, after=occurrence, times=1)
        result = bench.run(action)
        bench.site.sim.clear_faults()
        where = f"{mode} fault in {method} #{occurrence} ({step})"
        view = bench.view()
        if method in UNSEEN_FAULTS:
            clean = result.outcome is Outcome.SUCCESS and view == clean_end
            refused = result.outcome in (Outcome.FAILED, Outcome.REFUSED) and \
                view == before
            if not (clean or refused):
                problems.append(f"{where}: {result.outcome.value} {result.reason}, and "
                                f"the host is neither as before nor as a clean run")
        elif mode in ("transient", "lost-answer") or method in ABSORBED_BY_DESIGN:
            if result.outcome is not Outcome.SUCCESS or view != clean_end:
                problems.append(f"{where}: {result.outcome.value} {result.reason}")
        elif action == "unrescue" and step in CLEANUP_STEPS:
            # Irreversible clean-up is retried until it holds: a fault that
            # passes on the next call leaves nothing behind.
            if result.outcome is not Outcome.SUCCESS or result.leftovers or \
                    view != clean_end:
                problems.append(f"{where}: expected a clean unrescue, got "
                                f"{result.outcome.value} {result.leftovers}")
        elif result.outcome not in (Outcome.FAILED, Outcome.REFUSED):
            problems.append(f"{where}: expected a reverted failure, got "
                            f"{result.outcome.value} {result.reason}")
        elif view != before:
            problems.append(f"{where}: the host differs from before the {action}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["permanent", "transient", "lost-answer"])
@pytest.mark.parametrize(("generation", "nics", "drive"), SCENARIOS)
def test_a_fault_at_any_call_of_rescue_leaves_the_host_as_before_or_rescued(
        tmp_path, generation, nics, drive, mode):
    bench = Bench(tmp_path, generation, nics, rescue_config_drive=drive)
    bench.save("active")
    original = bench.view()
    with_drive = bench.view_with_drive() if drive else None
    positions = bench.reference("rescue")
    rescued = bench.view()

    problems = _check_positions(bench, "rescue", mode, positions, "active", original,
                                rescued, original, with_drive)

    assert not problems, "\n".join(problems)
    assert len(positions) > 20  # the reference ran (test_read_budget.py counts them)
    if drive:  # the drive's own calls were among the faulted ones
        assert ("attach_drive", 2, "AttachRescueConfigDrive") in positions
        assert bench.config_drive_path in json.loads(rescued)["files"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["permanent", "transient", "lost-answer"])
@pytest.mark.parametrize(("generation", "nics", "drive"), SCENARIOS)
def test_a_fault_at_any_call_of_unrescue_leaves_the_instance_rescued_or_restored(
        tmp_path, generation, nics, drive, mode):
    bench = Bench(tmp_path, generation, nics, rescue_config_drive=drive)
    original = bench.view()
    assert bench.run("rescue").outcome is Outcome.SUCCESS
    bench.save("rescued")
    rescued = bench.view()
    positions = bench.reference("unrescue")
    assert bench.view() == original

    problems = _check_positions(bench, "unrescue", mode, positions, "rescued", rescued,
                                original, original)

    assert not problems, "\n".join(problems)
    assert len(positions) > 10  # the reference ran (test_read_budget.py counts them)
    if drive:
        assert ("remove", 1, "DeleteRescueConfigDrive") in positions


# A call the flow fails at for good, that no revert makes (one fault per
# method): a rescue's last NIC connection, an unrescue's check that the
# instance runs again (its third get_vm_state), the step before its point of
# no return.
REVERTED_AT = {"rescue": lambda nics: ("connect_vnic_to_vswitch", nics - 1),
               "unrescue": lambda nics: ("get_vm_state", 2)}


# A rescue fails at a NIC's connection: only the scenarios with NICs.
REVERT_SCENARIOS = [
    pytest.param(action, *scenario.values, id=f"{action}-{scenario.id}")
    for action in ("rescue", "unrescue") for scenario in SCENARIOS
    if action == "unrescue" or scenario.values[1]]


@pytest.mark.slow
@pytest.mark.parametrize(("action", "generation", "nics", "drive"), REVERT_SCENARIOS)
def test_a_lost_answer_at_any_call_of_a_revert_still_ends_where_the_flow_began(
        tmp_path, action, generation, nics, drive):
    """The reverts' own calls: a flow fails at its last reversible step,
    every step before it reverts, and each call of those reverts in turn
    loses its answer once (the change is made, the caller sees a transient
    error). A revert that simply called again would destroy a VM that is
    gone, fail, and quarantine the instance."""
    failing = REVERTED_AT[action](nics)
    bench = Bench(tmp_path, generation, nics, rescue_config_drive=drive)
    if action == "unrescue":
        assert bench.run("rescue").outcome is Outcome.SUCCESS
    bench.save("start")
    start = bench.view()

    def fail(lost=None):
        bench.restore("start")
        bench.site.sim.clear_calls()
        bench.site.sim.set_fault(failing[0], "permanent", after=failing[1], times=1)
        if lost is not None:
            bench.site.sim.set_fault(lost[0], "lost-answer", after=lost[1], times=1)
        result = bench.run(action)
        # Both fired (a spent fault is dropped): the test is not vacuous.
        assert bench.site.sim.armed_faults()["faults"] == {}, bench.site.sim.armed_faults()
        return result

    reference = fail()
    assert reference.outcome is Outcome.FAILED and bench.view() == start, reference.reason
    calls = [call["method"] for call in bench.site.sim.calls()]
    first_revert_call = len(calls) - calls[::-1].index(failing[0])
    positions = [(method, calls[:index].count(method))
                 for index, method in enumerate(calls) if index >= first_revert_call]
    revert_methods = {method for method, _ in positions}
    # One fault per method: a revert calling the failing method would
    # replace its permanent fault with the lost answer.
    assert failing[0] not in revert_methods, positions
    assert {"detach_vm_disk", "attach_drive", "set_vm_state"} <= revert_methods, positions
    if action == "rescue":  # the rescue VM, its disk and its NICs go too
        assert {"destroy_vm", "remove", "destroy_nic"} <= revert_methods, positions

    problems = []
    for method, occurrence in positions:
        result = fail((method, occurrence))
        if result.outcome is not Outcome.FAILED or bench.view() != start:
            problems.append(f"lost answer in {method} #{occurrence}: "
                            f"{result.outcome.value} {result.reason}")
    assert not problems, "\n".join(problems)
