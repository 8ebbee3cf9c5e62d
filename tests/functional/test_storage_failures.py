"""A history database that fails mid-flow is not a failed step.

Locked past SQLite's busy timeout, dropped and refused by PostgreSQL (a
restart), or out of disk: the flow stops where it is, nothing is reverted,
nothing is quarantined, and the request is left unfinished ("history storage
unavailable"). Once the database answers, a resume finishes it exactly once,
and the host ends as a clean run leaves it. An outage shorter than
``[persistence] storage_retry_timeout`` is not even noticed. A quarantine
that cannot be recorded when a revert fails, or a process killed right then,
ends quarantined at the resume: never with a fresh flow on a broken host.
"""

from __future__ import annotations

import multiprocessing
import os
import re

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, make_site
from storagefaults import DiskFull, Outage, fast_runner

from rescue_flow import cli, exceptions, hyperv
from rescue_flow.commands import run as run_command
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.outcome import Outcome
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.simhost import SimulatedHost

FORK = multiprocessing.get_context("fork")
CHANGES = ("destroy_vm", "remove", "set_vm_state", "create_vm", "attach_drive")


@pytest.fixture
def site(tmp_path, db_url):
    site = make_site(str(tmp_path), db_url)
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    fast_runner(site)
    return site


def _rescued_view(tmp_path) -> str:
    """What a clean rescue leaves, on a host of its own."""
    clean = make_site(str(tmp_path / "clean"))
    clean.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2,
                     config_drive=True)
    assert clean.rescue(GEN1_UUID, GEN1_IMAGE).outcome is Outcome.SUCCESS
    return _masked(clean.view()).replace(str(tmp_path / "clean"), str(tmp_path))


def _masked(view: str) -> str:
    return re.sub(r"req-[0-9a-z-]+", "req-*", view)


def _fail_at(site, fault, step: str, state: str = "RUNNING"):
    def on_step(event):
        if event.step == step and event.state == state and not fault.active:
            fault.start()
    return on_step


def _outage(site, db_url):
    return Outage(db_url)


def _disk_full(site, db_url):
    return DiskFull(site.runner.history.engine)


@pytest.mark.parametrize("make_fault", [_outage, _disk_full], ids=["locked", "disk-full"])
@pytest.mark.parametrize("step", ["CreateRescueVM", "StartRescueVM"])
def test_storage_down_mid_rescue_leaves_it_for_resume_then_finishes_it_once(
        site, db_url, tmp_path, make_fault, step):
    fault = make_fault(site, db_url)
    request = Request("rescue", GEN1_UUID, "req-storage-1", image_id=GEN1_IMAGE)

    with pytest.raises(exceptions.StorageUnavailable, match="history storage unavailable"):
        site.runner.handle(request, on_step=_fail_at(site, fault, step))
    reverts = [call for call in site.sim.calls() if call["method"] == "destroy_vm"]
    fault.end()

    history = site.runner.history
    assert reverts == [], "a step that succeeded was reverted"
    assert history.get("req-storage-1").state != schema.FINISHED
    assert QuarantineList(history).all() == {}
    results = fast_runner(site).resume_unfinished()
    assert [result.outcome for result in results] == [Outcome.SUCCESS]
    assert fast_runner(site).resume_unfinished() == []
    assert history.get("req-storage-1").outcome == "success"
    assert _masked(site.view()) == _rescued_view(tmp_path)
    assert QuarantineList(history).all() == {}


def test_a_flow_taskflow_gave_up_on_while_storage_was_down_resumes_not_quarantines(
        site, tmp_path):
    # Step saves fail, the flow's own save does not: TaskFlow records the
    # flow FAILURE with no step failed and no revert run.
    fault = DiskFull(site.runner.history.engine, only="UPDATE atomdetails")
    request = Request("rescue", GEN1_UUID, "req-gave-up", image_id=GEN1_IMAGE)

    with pytest.raises(exceptions.StorageUnavailable):
        site.runner.handle(request, on_step=_fail_at(site, fault, "AttachRescueDisk"))
    fault.end()

    results = fast_runner(site).resume_unfinished()
    assert [result.outcome for result in results] == [Outcome.SUCCESS]
    assert QuarantineList(site.runner.history).all() == {}
    assert _masked(site.view()) == _rescued_view(tmp_path)


def test_storage_down_mid_unrescue_keeps_the_instance_rescued_until_resumed(site, db_url):
    assert site.rescue(GEN1_UUID, GEN1_IMAGE).outcome is Outcome.SUCCESS
    outage = Outage(db_url)
    request = Request("unrescue", GEN1_UUID, "req-storage-2")

    with pytest.raises(exceptions.StorageUnavailable):
        site.runner.handle(request, on_step=_fail_at(site, outage, "StartInstance"))
    outage.end()

    assert QuarantineList(site.runner.history).all() == {}
    results = fast_runner(site).resume_unfinished()
    assert [result.outcome for result in results] == [Outcome.SUCCESS]
    assert "-rescue" not in site.view()  # the rescue VM is gone, the instance runs


def test_an_outage_shorter_than_the_retry_time_is_not_noticed(site, db_url):
    outage = Outage(db_url)

    def on_step(event):
        if event.step == "CreateRescueDisk" and event.state == "RUNNING" and \
                not outage.active:
            outage.start()
            outage.end_after(0.5)

    result = site.runner.handle(Request("rescue", GEN1_UUID, "req-short",
                                        image_id=GEN1_IMAGE), on_step=on_step)
    assert result.outcome is Outcome.SUCCESS
    assert site.runner.history.get("req-short").outcome == "success"


def _break_reverts(site):
    site.sim.set_fault("soft_shutdown_vm", "permanent")
    site.sim.set_fault("set_vm_state", "permanent")


def test_a_quarantine_that_cannot_be_recorded_is_recorded_by_the_resume(site, db_url):
    _break_reverts(site)
    outage = Outage(db_url)
    request = Request("rescue", GEN1_UUID, "req-revert-failed", image_id=GEN1_IMAGE)

    with pytest.raises(exceptions.StorageUnavailable):
        site.runner.handle(request, on_step=_fail_at(site, outage, "StopInstance",
                                                    "REVERT_FAILURE"))
    outage.end()
    site.sim.clear_faults()  # the operator would not have repaired anything yet;
    site.sim.clear_calls()  # either way, the resume must not touch the host

    results = fast_runner(site).resume_unfinished()

    assert [result.outcome for result in results] == [Outcome.QUARANTINED]
    assert "then reverting StopInstance failed" in results[0].reason
    assert [call for call in site.sim.calls() if call["method"] in CHANGES] == []
    assert QuarantineList(site.runner.history).get(GEN1_UUID)["request_id"] == \
        "req-revert-failed"


def _killed_after_the_revert_failed(conf, request):
    def die(*args, **kwargs):
        os._exit(SimulatedHost.CRASH_EXIT_CODE)  # as kill -9: nothing after it runs

    History.finish = die  # this child only
    runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), History.from_conf(conf))
    runner.handle(request)


def test_a_process_killed_right_after_a_revert_failure_is_quarantined_at_resume(site):
    _break_reverts(site)
    request = Request("rescue", GEN1_UUID, "req-killed", image_id=GEN1_IMAGE)
    child = FORK.Process(target=_killed_after_the_revert_failed, args=(site.conf, request))
    child.start()
    child.join(60)
    assert child.exitcode == SimulatedHost.CRASH_EXIT_CODE
    site.sim.clear_faults()
    site.sim.clear_calls()

    results = fast_runner(site).resume_unfinished()

    assert [result.outcome for result in results] == [Outcome.QUARANTINED]
    assert [call for call in site.sim.calls() if call["method"] in CHANGES] == []
    assert QuarantineList(site.runner.history).get(GEN1_UUID) is not None


def test_a_run_that_failed_on_a_corrupt_host_file_is_not_resumed(site, tmp_path, capsys):
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(
        f"[DEFAULT]\nhost = {site.conf.host}\nstate_path = {site.conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {site.conf.hyperv.instances_path}\n"
        f"[persistence]\nconnection = {site.conf.persistence.connection}\n")
    state_file = site.conf.simulated.state_file
    with open(state_file, "rb") as handle:
        good = handle.read()
    with open(state_file, "wb") as handle:
        handle.write(good[: len(good) // 2])  # cut in the middle

    code = cli.main(["--config-file", str(config_file), "run", "rescue", GEN1_UUID,
                     "--image", GEN1_IMAGE])

    out = capsys.readouterr().out
    assert code == 1
    assert "failed: failed outside its flow" in out
    [record] = site.runner.history.recent(GEN1_UUID)
    assert (record.state, record.outcome) == (schema.FINISHED, "failed")
    assert "unreadable" in record.result["reason"]

    with open(state_file, "wb") as handle:
        handle.write(good)
    assert cli.main(["--config-file", str(config_file), "resume"]) == 0
    assert "0 unfinished request(s)" in capsys.readouterr().out
    assert "-rescue" not in site.view()


def test_run_says_history_storage_unavailable_exits_5_and_resume_finishes_it(
        site, db_url, tmp_path, capsys, monkeypatch):
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(
        f"[DEFAULT]\nhost = {site.conf.host}\nstate_path = {site.conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {site.conf.hyperv.instances_path}\n"
        "soft_shutdown_timeout = 1\npower_state_poll_interval = 0.01\n"
        f"[persistence]\nconnection = {db_url}\nstorage_retry_timeout = 1.5\n"
        "sqlite_busy_timeout = 0.1\n")
    outage = Outage(db_url)
    printed = run_command.print_step

    def print_and_fail(event):
        printed(event)
        if event.step == "CreateRescueVM" and event.state == "RUNNING" and \
                not outage.active:
            outage.start()

    monkeypatch.setattr(run_command, "print_step", print_and_fail)
    code = cli.main(["--config-file", str(config_file), "run", "rescue", GEN1_UUID,
                     "--image", GEN1_IMAGE])
    outage.end()
    out = capsys.readouterr().out
    assert code == run_command.EXIT_ENVIRONMENT
    assert "history storage unavailable" in out and "rescue-flow resume" in out
    assert "REVERT" not in out

    monkeypatch.setattr(run_command, "print_step", printed)
    assert cli.main(["--config-file", str(config_file), "resume"]) == 0
    out = capsys.readouterr().out
    assert "1 unfinished request(s)" in out
    assert out.strip().endswith(f"rescue {GEN1_UUID}: success")
    assert QuarantineList(site.runner.history).all() == {}
