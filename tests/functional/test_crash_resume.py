"""A process killed at any step of either flow: after resume, the host is whole.

For every step of both flows, a child process runs the request and the
simulated host kills it (``os._exit``) right before, or right after, one of
that step's Hyper-V changes takes effect: the first change of the step and
its last. A fresh runner in this process then resumes every unfinished
request, as the worker does at start. The host must end rescued exactly as a
clean run leaves it (or, for unrescue, exactly as before the rescue), and the
history must show the request once, finished, with a single flow run.
Both run on SQLite and on PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import datetime
import multiprocessing
import time

import pytest
from simsite import Bench

from rescue_flow import hyperv, requests
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.outcome import Outcome
from rescue_flow.persistence.history import History
from rescue_flow.simhost import SimulatedHost

MUTATING = {"set_vm_state", "soft_shutdown_vm", "create_differencing_vhd", "create_vm",
            "update_vm", "create_scsi_controller", "attach_drive", "detach_vm_disk",
            "set_boot_order", "create_nic", "connect_vnic_to_vswitch", "destroy_nic",
            "destroy_vm", "remove"}
FORK = multiprocessing.get_context("fork")
FIRST_STEP = {"rescue": "ValidateRescue", "unrescue": "ValidateUnrescue"}


def crash_points(positions):
    """(method, occurrence, step, mode): first and last change of each step."""
    by_step: dict[str, list[tuple[str, int]]] = {}
    for method, occurrence, step in positions:
        if method in MUTATING:
            by_step.setdefault(step, []).append((method, occurrence))
    points = set()
    for step, changes in by_step.items():
        for method, occurrence in {changes[0], changes[-1]}:
            for mode in ("crash-before", "crash-after"):
                points.add((method, occurrence, step, mode))
    return sorted(points, key=lambda point: (point[2], point[1], point[0], point[3]))


def _child(conf, request):
    # A fresh runner: nothing shared with the parent's database connections.
    runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), History.from_conf(conf))
    runner.handle(request)
    raise SystemExit(0)


def _crash_then_resume(bench, action, point, before_resume=None, **fields):
    method, occurrence, _step, mode = point
    bench.site.sim.set_fault(method, mode, after=occurrence, times=1)
    request = bench.request(action, **fields)
    child = FORK.Process(target=_child, args=(bench.site.conf, request))
    child.start()
    child.join(60)
    bench.site.sim.clear_faults()
    assert child.exitcode == SimulatedHost.CRASH_EXIT_CODE, f"{point}: no crash"
    if before_resume is not None:
        before_resume()

    conf = bench.site.conf
    history = History.from_conf(conf)
    results = FlowRunner.from_conf(conf, hyperv.get_host(conf), history).resume_unfinished()
    record = history.get(request.request_id)
    steps = [step for _flow, step, _state in history.steps(record)]
    history.close()
    return results, record, steps


def _check(bench, action, points, start, expected_view):
    problems = []
    for point in points:
        bench.restore(start)
        results, record, steps = _crash_then_resume(bench, action, point)
        where = f"{point[3]} at {point[0]} #{point[1]} ({point[2]})"
        if [r.outcome for r in results] != [Outcome.SUCCESS]:
            problems.append(f"{where}: resume gave {[r.to_dict() for r in results]}")
        elif bench.view() != expected_view:
            problems.append(f"{where}: the host differs from a clean {action}")
        elif record.state != "finished" or record.outcome != "success" or \
                steps.count(FIRST_STEP[action]) != 1:
            problems.append(f"{where}: history shows {record.state} {record.outcome} "
                            f"steps {steps}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize(("generation", "nics", "drive"), [(1, 1, "iso"), (2, 1, "vhd")])
def test_a_crash_at_any_step_of_rescue_resumes_to_a_clean_rescue(tmp_path, generation,
                                                                  nics, drive, db_url):
    bench = Bench(tmp_path, generation, nics, persistence_url=db_url,
                  rescue_config_drive=drive)
    bench.save("active")
    positions = bench.reference("rescue")
    rescued = bench.view()
    points = crash_points(positions)

    problems = _check(bench, "rescue", points, "active", rescued)

    assert not problems, "\n".join(problems)
    assert {step for _m, _o, step, _mode in points} >= {
        "StopInstance", "CreateRescueDisk", "CreateRescueVM", "AttachRescueDisk",
        "DetachRootDisk", "AttachRootDiskToRescueVM", "AttachRescueConfigDrive",
        "CopyNetworkIdentity", "StartRescueVM"}


@pytest.mark.slow
@pytest.mark.parametrize(("generation", "nics", "drive"), [(1, 1, "iso"), (2, 1, "vhd")])
def test_a_crash_at_any_step_of_unrescue_resumes_to_the_host_before_the_rescue(
        tmp_path, generation, nics, drive, db_url):
    bench = Bench(tmp_path, generation, nics, persistence_url=db_url,
                  rescue_config_drive=drive)
    original = bench.view()
    assert bench.run("rescue").outcome is Outcome.SUCCESS
    bench.save("rescued")
    positions = bench.reference("unrescue")
    points = crash_points(positions)

    problems = _check(bench, "unrescue", points, "rescued", original)

    assert not problems, "\n".join(problems)
    assert {step for _m, _o, step, _mode in points} >= {
        "StopRescueVM", "DetachRootDiskFromRescueVM", "AttachRootDiskToInstance",
        "StartInstance", "DestroyRescueVM", "DeleteRescueDisk", "DeleteRescueConfigDrive"}


@pytest.mark.slow
@pytest.mark.parametrize("generation", [1, 2])
def test_a_crash_between_the_drive_and_its_attach_resumed_too_late_reverts_and_deletes_it(
        tmp_path, generation, db_url):
    """The driver wrote the drive, the worker died before attaching it, and
    came back after the request's deadline: the flow reverts, and neither
    the drive nor its file is left."""
    bench = Bench(tmp_path, generation, 1, persistence_url=db_url,
                  rescue_config_drive="iso")
    original = bench.view()
    deadline = requests.format_time(requests.utcnow() + datetime.timedelta(seconds=3))
    # attach_drive #2 is the config drive's (rescue disk, root disk, drive).
    point = ("attach_drive", 2, "AttachRescueConfigDrive", "crash-before")

    results, record, _steps = _crash_then_resume(
        bench, "rescue", point, deadline=deadline,
        before_resume=lambda: time.sleep(3.5))

    assert [r.outcome for r in results] == [Outcome.FAILED], results
    assert results[0].failed_step == "AttachRescueConfigDrive"
    assert "deadline" in results[0].reason
    assert bench.site.sim.read_file(bench.config_drive_path) is None
    assert bench.view() == original
    assert record.state == "finished"
