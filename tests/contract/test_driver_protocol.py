"""The worker's side of the protocol with rescue-flow's Nova driver (docs/protocol.md).

docs/protocol-examples/ holds one message of each kind; the driver's own
contract test (nova_driver/tests/unit/test_protocol_contract.py) builds the
same requests and reads the same results. If either side drifts, its test
fails against the shared examples.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from rescue_flow import layout, records, requests
from rescue_flow.engine.progress import StepEvent
from rescue_flow.messaging import nova, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.service.driver_presence import DriverHello

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol-examples"
NOVA_SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "nova_samples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def as_message(item: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": item["event_type"], "payload": item["payload"],
            "message_id": "m-1", "priority": "INFO"}


@pytest.mark.parametrize("name", ["driver-rescue-request", "driver-unrescue-request"])
def test_a_driver_request_becomes_the_request_its_inputs_describe(name: str) -> None:
    item = example(name)
    inputs = item["inputs"]
    request, progress = protocol.request_from_message(as_message(item), inputs["host"])
    assert progress is True
    assert item["routing_key"] == protocol.request_topic("rescue_flow_requests",
                                                         inputs["host"]) + ".info"
    assert (request.action, request.instance_uuid, request.host, request.source,
            request.nova_request_id) == (inputs["action"], inputs["instance_uuid"],
                                         inputs["host"], "nova-driver",
                                         inputs["nova_request_id"])
    assert request.request_id == requests.nova_action_request_id(
        inputs["nova_request_id"], inputs["action"], inputs["instance_uuid"])
    now = requests.parse_time(inputs["now"], "now")
    assert now is not None
    start_by = requests.parse_time(request.start_by, "start_by")
    deadline = requests.parse_time(request.deadline, "deadline")
    assert start_by is not None and deadline is not None
    assert (start_by - now).total_seconds() == inputs["start_timeout"]
    assert (deadline - now).total_seconds() == inputs["timeout"] - inputs["revert_allowance"]
    for field in ("image_id", "image_generation", "shutdown_timeout", "image_os_secure_boot",
                  "image_os_type", "config_drive"):
        assert getattr(request, field) == inputs.get(field), field


def test_the_example_config_drive_is_one_the_rescue_flow_accepts() -> None:
    drive = example("driver-rescue-request")["payload"]["config_drive"]
    instances = r"C:\OpenStack\Instances"

    path, drive_type = layout.rescue_config_drive(
        instances, instances + r"\instance-0000002a", drive["path"], drive["format"])

    assert (path, drive_type) == (drive["path"], records.DRIVE_DVD)


def test_no_driver_request_carries_a_password() -> None:
    for name in ("driver-rescue-request", "driver-unrescue-request"):
        text = json.dumps(example(name)["payload"]).lower()
        assert "pass" not in text, name


def test_the_driver_and_the_notification_of_one_nova_action_share_a_request_id() -> None:
    item = example("driver-rescue-request")
    inputs = item["inputs"]
    sample = json.loads((NOVA_SAMPLES / "resolved" / "instance-rescue-start.json").read_text())
    sample["payload"]["nova_object.data"].update(uuid=inputs["instance_uuid"],
                                                  host=inputs["host"])
    from_nova = nova.parse(sample, {"request_id": inputs["nova_request_id"]})
    assert from_nova is not None
    assert from_nova.request_id == item["payload"]["request_id"]
    assert from_nova.nova_request_id == inputs["nova_request_id"]


def test_the_driver_announcement_parses() -> None:
    item = example("driver-hello")
    hello = DriverHello.from_message(as_message(item), item["inputs"]["host"])
    assert hello == DriverHello(item["inputs"]["host"], item["inputs"]["driver"], 1,
                                item["inputs"]["valid_for"])


@pytest.mark.parametrize("name", ["worker-result-success", "worker-result-failed"])
def test_the_worker_sends_results_exactly_in_the_examples_shape(name: str) -> None:
    item = example(name)
    result = Result.from_dict(item["payload"])
    assert result.to_dict() == item["payload"]
    assert item["event_type"] == protocol.result_event_type(result.action, result.outcome.ok)
    assert item["routing_key"] == "rescue_flow_results." + (
        "info" if result.outcome.ok else "error")
    # Every outcome the driver knows is one the worker has.
    assert result.outcome in set(Outcome)


def test_the_worker_sends_steps_in_the_examples_shape() -> None:
    item = example("worker-step")
    sent: list[tuple[str, str, Any]] = []

    class Recorder:
        def send(self, topic: str, event_type: str, payload: Any, **kwargs: Any) -> None:
            sent.append((topic, event_type, payload))

    payload = item["payload"]
    request = requests.Request("rescue", payload["instance_uuid"], payload["request_id"],
                               host=payload["host"])
    protocol.Results(Recorder(), "rescue_flow_results").step(  # type: ignore[arg-type]
        request, StepEvent(payload["flow"], payload["step"], payload["state"],
                           payload["seconds"]))
    assert sent == [("rescue_flow_results", item["event_type"], payload)]
