"""The exact order of TaskFlow state transitions, on success and on revert."""

from __future__ import annotations

import pytest
import taskflow.engines
from simsite import GEN1_IMAGE, GEN1_UUID
from taskflow.listeners.capturing import CaptureListener

from rescue_flow import exceptions, hyperv
from rescue_flow.flows import get_rescue_flow, get_unrescue_flow

RESCUE_STEPS = ["ValidateRescue", "SnapshotConfig", "CheckRescueConfigDrive",
                "StopInstance", "CreateRescueDisk", "CreateRescueVM", "AttachRescueDisk",
                "DetachRootDisk", "AttachRootDiskToRescueVM", "AttachRescueConfigDrive",
                "CopyNetworkIdentity", "StartRescueVM"]


def _capture(flow, store):
    engine = taskflow.engines.load(flow, store=store, engine="serial")
    with CaptureListener(engine, capture_flow=True) as capture:
        try:
            engine.run()
        except Exception as exc:  # the transitions are what is under test
            capture.values.append(("error", type(exc).__name__))
    return [(name_of(details), state) if kind != "error" else (kind, state)
            for kind, state, details in _triples(capture.values)]


def _triples(values):
    for value in values:
        yield value if len(value) == 3 else (value[0], value[1], None)


def name_of(details):
    return details.get("task_name") or details.get("flow_name")


def _rescue_store():
    return {"instance_uuid": GEN1_UUID, "image_id": GEN1_IMAGE, "image_generation": None,
            "request_id": "req-1"}


@pytest.fixture
def host(seeded):
    return hyperv.get_host(seeded.conf)


def test_a_successful_rescue_runs_each_step_once_in_order(host):
    transitions = _capture(get_rescue_flow(host), _rescue_store())

    expected = [("rescue-instance", "RUNNING")]
    for step in RESCUE_STEPS:
        expected += [(step, "RUNNING"), (step, "SUCCESS")]
    expected += [("rescue-instance", "SUCCESS")]
    assert transitions == expected


def test_a_failed_step_reverts_itself_then_every_earlier_step_in_reverse(seeded, host):
    # The second attach_drive is AttachRootDiskToRescueVM's.
    seeded.sim.set_fault("attach_drive", "permanent", after=1, times=1)

    transitions = _capture(get_rescue_flow(host), _rescue_store())

    failed_at = RESCUE_STEPS.index("AttachRootDiskToRescueVM")
    ran = RESCUE_STEPS[:failed_at]
    expected = [("rescue-instance", "RUNNING")]
    for step in ran:
        expected += [(step, "RUNNING"), (step, "SUCCESS")]
    expected += [("AttachRootDiskToRescueVM", "RUNNING"),
                 ("AttachRootDiskToRescueVM", "FAILURE")]
    # The failed step reverts too (it may have half-happened); the steps
    # after it never ran and are not touched.
    for step in ["AttachRootDiskToRescueVM", *reversed(ran)]:
        expected += [(step, "REVERTING"), (step, "REVERTED")]
    expected += [("rescue-instance", "REVERTED"), ("error", "PermanentHyperVError")]
    assert transitions == expected


def test_a_revert_that_fails_stops_the_reverts_and_fails_the_flow(seeded, host):
    # Every set_vm_state fails from the first one on: StopInstance fails, and
    # so does its revert (restoring the running state).
    seeded.sim.set_fault("soft_shutdown_vm", "permanent")
    seeded.sim.set_fault("set_vm_state", "permanent")

    transitions = _capture(get_rescue_flow(host), _rescue_store())

    assert ("StopInstance", "REVERT_FAILURE") in transitions
    assert ("SnapshotConfig", "REVERTING") not in transitions
    assert transitions[-2:] == [("rescue-instance", "FAILURE"),
                                ("error", "PermanentHyperVError")]


def test_a_successful_unrescue_cleans_up_only_after_the_instance_runs(seeded, host):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    transitions = _capture(get_unrescue_flow(host), {"instance_uuid": GEN1_UUID})

    order = [step for step, state in transitions if state == "SUCCESS"]
    assert order == ["ValidateUnrescue", "StopRescueVM", "DetachRootDiskFromRescueVM",
                     "AttachRootDiskToInstance", "StartInstance", "DestroyRescueVM",
                     "DeleteRescueDisk", "DeleteRescueConfigDrive", "unrescue-instance"]


def test_validation_errors_surface_unwrapped(host):
    store = dict(_rescue_store(), instance_uuid="dddddddd-0000-4000-8000-000000000004")
    engine = taskflow.engines.load(get_rescue_flow(host), store=store, engine="serial")

    with pytest.raises(exceptions.InstanceNotFound):
        engine.run()
