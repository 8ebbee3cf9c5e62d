"""The instance state machine end to end: real flows on a simulated host,
every state reached through the runner, each end recorded with the state
``rescue-flow status`` shows, and a request that waits behind another
process's flow."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, new_request_id
from taskflow import states as tf_states

from rescue_flow import cli
from rescue_flow.engine import states
from rescue_flow.outcome import Outcome, Result
from rescue_flow.requests import Request

pytestmark = pytest.mark.usefixtures("restore_logging")


def start_flow(history, request: Request, kind: str) -> None:
    """Record ``request`` as another process running a flow of ``kind`` for
    it does: accepted, a flow detail, and TaskFlow's first state change."""
    history.accept(request)
    _, detail = history.new_flow_detail(request.request_id, kind)
    detail.state = tf_states.RUNNING
    with contextlib.closing(history.backend.get_connection()) as connection:
        connection.update_flow_details(detail)


def status_states(seeded, config_file, capsys) -> list[tuple[str, str | None]]:
    """(action, instance_state) of each recorded request, oldest first."""
    capsys.readouterr()
    assert cli.main(["--config-file", config_file, "status", "--json"]) == 0
    return [(item["action"], item["instance_state"])
            for item in reversed(json.loads(capsys.readouterr().out))]


def test_status_shows_the_state_each_request_left_the_instance_in(seeded, config_file,
                                                                  capsys):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)  # nothing to do
    # AttachRootDiskToInstance fails once: the unrescue is reverted.
    seeded.sim.set_fault("attach_drive", "permanent", times=1)
    failed = seeded.unrescue(GEN1_UUID)
    seeded.sim.clear_faults()
    seeded.unrescue(GEN1_UUID)

    assert failed.outcome is Outcome.FAILED
    assert status_states(seeded, config_file, capsys) == [
        ("rescue", states.RESCUED), ("rescue", states.RESCUED),
        ("unrescue", states.RESCUED), ("unrescue", states.ACTIVE)]


def test_leftovers_are_cleaned_then_the_rescue_runs_and_status_says_rescued(
        seeded, config_file, capsys):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    # The unrescue's final clean-up cannot remove the rescue VM, however
    # often it retries.
    seeded.sim.set_fault("destroy_vm", "permanent", times=seeded.conf.retry.attempts)
    left = seeded.unrescue(GEN1_UUID)
    seeded.sim.clear_faults()

    again = seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    assert (left.outcome, bool(left.leftovers)) == (Outcome.SUCCESS, True)
    assert (again.outcome, again.leftovers) == (Outcome.SUCCESS, [])
    assert status_states(seeded, config_file, capsys)[1:] == [
        ("unrescue", states.LEFTOVERS), ("rescue", states.RESCUED)]


def test_a_failed_revert_leaves_the_instance_quarantined_and_refuses_the_next(
        seeded, config_file, capsys):
    seeded.sim.set_fault("soft_shutdown_vm", "permanent")
    seeded.sim.set_fault("set_vm_state", "permanent")
    first = seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    seeded.sim.clear_faults()
    seeded.sim.clear_calls()

    refused = seeded.unrescue(GEN1_UUID)

    assert (first.outcome, refused.outcome) == (Outcome.QUARANTINED, Outcome.QUARANTINED)
    assert seeded.sim.calls() == []
    assert status_states(seeded, config_file, capsys) == [
        ("rescue", states.QUARANTINED), ("unrescue", states.QUARANTINED)]


def test_status_shows_the_state_a_running_flow_runs_in(seeded, config_file, capsys):
    start_flow(seeded.runner.history, Request("unrescue", GEN1_UUID, new_request_id()),
               "unrescue")

    assert status_states(seeded, config_file, capsys) == [
        ("unrescue", states.UNRESCUING)]


def _hold_lock_in_another_process(path: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from rescue_flow.engine import locks\n"
         "with locks.file_lock(sys.argv[1]):\n"
         "    print('held', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def run_behind_another_process(seeded, caplog, request: Request,
                               while_waiting: Callable[[], None]) -> Result:
    """Run ``request`` while another process (say ``rescue-flow run``) holds
    the instance rescuing it; once the request says it waits, call
    ``while_waiting``, then let the other process go."""
    start_flow(seeded.runner.history,
               Request("rescue", GEN1_UUID, new_request_id(), image_id=GEN1_IMAGE),
               "rescue")
    os.makedirs(seeded.runner.lock_dir, exist_ok=True)
    holder = _hold_lock_in_another_process(
        os.path.join(seeded.runner.lock_dir, f"{GEN1_UUID}.lock"))
    seeded.runner.history.accept(request)
    results: list[Result] = []
    caplog.set_level(logging.INFO, logger="rescue_flow.engine.runner")
    waiter = threading.Thread(target=lambda: results.append(
        seeded.runner.execute(request)))
    try:
        waiter.start()
        deadline = time.monotonic() + 30
        while "waits behind its flow" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        while_waiting()
    finally:
        holder.communicate("")  # the other process lets go
    waiter.join(timeout=30)
    return results[0]


def test_a_request_waits_behind_another_processs_flow_then_runs(seeded, caplog):
    def still_waiting() -> None:
        assert f"instance {GEN1_UUID} is rescuing, so the rescue waits behind its flow" \
            in caplog.text
        assert seeded.sim.calls() == []  # nothing done yet

    request = Request("rescue", GEN1_UUID, new_request_id(), image_id=GEN1_IMAGE)
    result = run_behind_another_process(seeded, caplog, request, still_waiting)

    assert result.outcome is Outcome.SUCCESS  # read again, then run


def test_a_request_that_waited_is_refused_if_the_flow_it_waited_for_quarantined(
        seeded, caplog):
    def revert_fails_there() -> None:  # the other process quarantines the instance
        seeded.runner.quarantine.add(GEN1_UUID, "reverting StopInstance failed", "other")

    result = run_behind_another_process(
        seeded, caplog, Request("unrescue", GEN1_UUID, new_request_id()),
        revert_fails_there)

    assert result.outcome is Outcome.QUARANTINED
    assert "reverting StopInstance failed" in result.reason
    assert seeded.sim.calls() == []  # the host was not even read
