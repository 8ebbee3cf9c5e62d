"""The driver's side of the protocol with the worker (docs/protocol.md).

Builds the requests and announcements of docs/protocol-examples/ from their
recorded inputs and reads the worker's example results; the worker's
contract test (tests/contract/test_driver_protocol.py) reads the same files.
"""

from __future__ import annotations

import datetime
import inspect
import json
import pathlib
from typing import Any

import pytest

from rescue_flow_nova import protocol

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "docs" / "protocol-examples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["driver-rescue-request", "driver-unrescue-request"])
def test_the_driver_builds_exactly_the_example_request(name: str) -> None:
    item = example(name)
    inputs = dict(item["inputs"])
    inputs["now"] = datetime.datetime.fromisoformat(inputs["now"])
    assert protocol.build_request(**inputs) == item["payload"]
    assert item["event_type"] == protocol.REQUEST_EVENT
    assert item["routing_key"] == protocol.request_topic(
        "rescue_flow_requests", inputs["host"]) + ".info"


def test_the_request_names_the_config_drive_and_has_no_place_for_a_password() -> None:
    params = inspect.signature(protocol.build_request).parameters
    drive = example("driver-rescue-request")["payload"]["config_drive"]

    assert not [name for name in params if "pass" in name.lower()]
    assert drive["path"].rsplit("\\", 1)[1] == protocol.RESCUE_CONFIG_DRIVE_STEM + ".iso"


def test_the_driver_builds_exactly_the_example_announcement() -> None:
    item = example("driver-hello")
    assert protocol.build_hello(**item["inputs"]) == item["payload"]
    assert item["event_type"] == protocol.HELLO_EVENT


def test_a_success_result_is_read_as_ok() -> None:
    payload = example("worker-result-success")["payload"]
    result = protocol.parse_result({"event_type": "rescue_flow.rescue.end",
                                    "payload": payload}, payload["request_id"])
    assert result is not None and result.ok and result.outcome == "success"


def test_a_failed_result_becomes_a_fault_with_the_step_and_cause_first() -> None:
    payload = example("worker-result-failed")["payload"]
    result = protocol.parse_result({"event_type": "rescue_flow.rescue.error",
                                    "payload": payload}, payload["request_id"])
    assert result is not None and not result.ok
    assert result.failed_step == "AttachRootDiskToRescueVM"
    assert result.reverted_steps[-1] == "ValidateRescue"
    fault = result.fault()
    assert fault.startswith("AttachRootDiskToRescueVM failed: WMI job failed")
    assert fault.endswith("; host restored")
    assert len(fault) <= protocol.FAULT_ROOM


def test_results_of_other_requests_and_steps_are_not_results() -> None:
    payload = example("worker-result-failed")["payload"]
    assert protocol.parse_result({"payload": payload}, "another-request") is None
    step = example("worker-step")
    assert protocol.parse_result(step, step["payload"]["request_id"]) is None
    assert protocol.parse_step(step, step["payload"]["request_id"]) == (
        "StopInstance", "SUCCESS")


def test_an_envelope_round_trips_through_json() -> None:
    now = datetime.datetime(2026, 12, 6, tzinfo=datetime.timezone.utc)
    body = protocol.envelope(protocol.HELLO_EVENT, {"host": "hv-01"}, "rescue-flow-nova:hv",
                             now, {"request_id": "req-1"}, message_id="m-1")
    message = protocol.unwrap(json.dumps(body))
    assert message is not None
    assert (message["event_type"], message["payload"], message["message_id"],
            message["_context_request_id"]) == (protocol.HELLO_EVENT, {"host": "hv-01"},
                                                "m-1", "req-1")
    assert protocol.unwrap(b"not json") is None


@pytest.mark.parametrize("outcome, tail", [
    ("failed", "; host restored"), ("refused", "; host unchanged"),
    ("quarantined", "(rescue-flow status 9c2a6e3e-52a8-4c63-8d4b-0f6c3e1d2a77)")])
def test_a_long_cause_is_cut_so_the_hosts_state_still_fits(outcome: str, tail: str) -> None:
    result = protocol.WorkerResult(
        "r", "rescue", "9c2a6e3e-52a8-4c63-8d4b-0f6c3e1d2a77", outcome,
        reason="StopInstance failed: " + "x" * 400, failed_step="StopInstance")
    fault = result.fault()
    assert len(fault) == protocol.FAULT_ROOM
    assert fault.startswith("StopInstance failed: xxx") and fault.endswith(tail)
