"""rescue-flow's protocol, the driver's side: what goes to the worker and back.

docs/protocol.md is the definition; docs/protocol-examples/ holds one
message of each kind, which the contract tests of both packages check
(nova_driver/tests/unit/test_protocol_contract.py here,
tests/contract/test_driver_protocol.py in the worker). Nothing here imports
nova, so the contract test runs in either environment.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Mapping
from typing import Any

PROTOCOL_VERSION = 1

REQUEST_EVENT = "rescue_flow.request"
HELLO_EVENT = "rescue_flow.driver.hello"
STEP_EVENT = "rescue_flow.step"
SOURCE = "nova-driver"

RESCUE = "rescue"
UNRESCUE = "unrescue"

# The worker's names on the host (rescue_flow/layout.py, hyperv/reader.py).
RESCUE_VM_SUFFIX = "-rescue"
# compute-hyperv's name for a rescue config drive (pathutils.get_configdrive_path
# with rescue=True), the only one the worker accepts, beside the instance's disks.
RESCUE_CONFIG_DRIVE_STEM = "configdrive-rescue"

OK_OUTCOMES = ("success", "nothing_to_do", "duplicate")
# Nova keeps 255 characters of a fault, and its own words take 79 of them:
# "Instance <uuid> cannot be rescued: Driver Error: ".
FAULT_ROOM = 255 - 79

_MACHINE_TYPES = {"hyperv-gen1": 1, "hyperv-gen2": 2}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).isoformat()


def request_topic(requests_topic: str, host: str) -> str:
    """Where host's worker takes its requests: queue ``<this>.info``."""
    return f"{requests_topic}.{host}"


def action_request_id(nova_request_id: str, action: str, instance_uuid: str) -> str:
    """The request id of one Nova action: the worker derives the same id from
    that action's notification, so the action runs once whichever comes first."""
    return f"nova:{nova_request_id}:{action}:{instance_uuid}"


def rescue_vm_name(instance_name: str) -> str:
    return instance_name + RESCUE_VM_SUFFIX


def generation_of(machine_type: Any) -> int | None:
    """The VM generation a Glance ``hw_machine_type`` names, or None."""
    return _MACHINE_TYPES.get(machine_type) if isinstance(machine_type, str) else None


def build_request(action: str, instance_uuid: str, host: str, nova_request_id: str,
                  now: datetime.datetime, timeout: int, revert_allowance: int,
                  start_timeout: int, image_id: str | None = None,
                  image_generation: int | None = None, shutdown_timeout: int | None = None,
                  image_os_secure_boot: str | None = None,
                  image_os_type: str | None = None,
                  config_drive: dict[str, str] | None = None) -> dict[str, Any]:
    """The payload of a ``rescue_flow.request`` from the driver.

    The worker starts it by ``now + start_timeout`` or never, and starts no
    step after ``now + timeout - revert_allowance``; the driver waits
    ``timeout`` in all. ``config_drive`` (rescue): ``{"path", "format"}`` of
    the rescue config drive the driver built; the password is inside that
    file, never in the message.
    """
    payload: dict[str, Any] = {
        "action": action,
        "instance_uuid": instance_uuid,
        "request_id": action_request_id(nova_request_id, action, instance_uuid),
        "host": host,
        "source": SOURCE,
        "nova_request_id": nova_request_id,
        "start_by": format_time(now + datetime.timedelta(seconds=start_timeout)),
        "deadline": format_time(now + datetime.timedelta(seconds=timeout - revert_allowance)),
        "progress": True,
        "protocol": PROTOCOL_VERSION,
    }
    if action == RESCUE:
        payload.update(image_id=image_id, image_generation=image_generation,
                       shutdown_timeout=shutdown_timeout,
                       image_os_secure_boot=image_os_secure_boot, image_os_type=image_os_type,
                       config_drive=config_drive)
    return payload


def build_hello(host: str, driver: str, valid_for: int) -> dict[str, Any]:
    """The payload of a ``rescue_flow.driver.hello``: this host's nova-compute
    runs ``driver`` and sends its own requests for ``valid_for`` seconds."""
    return {"host": host, "driver": driver, "protocol": PROTOCOL_VERSION,
            "valid_for": valid_for}


def envelope(event_type: str, payload: Mapping[str, Any], publisher_id: str,
             now: datetime.datetime, context: Mapping[str, Any] | None = None,
             message_id: str | None = None) -> dict[str, Any]:
    """A notification in oslo.messaging's 2.0 envelope, as the worker's listener reads it."""
    message = {
        "message_id": message_id or str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": "INFO",
        "payload": dict(payload),
        "timestamp": now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        .strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    # oslo.messaging carries the request context beside the message.
    message.update({f"_context_{key}": value for key, value in (context or {}).items()})
    return {"oslo.version": "2.0", "oslo.message": json.dumps(message)}


def unwrap(body: Any) -> dict[str, Any] | None:
    """The notification in a wire body (JSON text or dict, enveloped or not);
    None for anything else."""
    try:
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8")
        if isinstance(body, str):
            body = json.loads(body)
        if isinstance(body, dict) and isinstance(body.get("oslo.message"), str):
            body = json.loads(body["oslo.message"])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """The end of one request, as the worker reports it."""

    request_id: str
    action: str
    instance_uuid: str
    outcome: str
    reason: str | None = None
    failed_step: str | None = None
    reverted_steps: tuple[str, ...] = ()
    leftovers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in OK_OUTCOMES

    def fault(self) -> str:
        """What Nova should store as the fault: the step and the cause first,
        then whether the host was restored, in at most FAULT_ROOM characters."""
        if self.outcome == "quarantined":
            tail = (f"; revert failed too: host left as is for an operator "
                    f"(rescue-flow status {self.instance_uuid})")
        elif self.outcome == "refused":
            tail = "; host unchanged"
        else:
            tail = "; host restored"
        text = self.reason or f"{self.failed_step or self.action} failed ({self.outcome})"
        room = FAULT_ROOM - len(tail)
        if len(text) > room:
            text = text[:room - 1] + "…"
        return text + tail


def parse_result(message: Mapping[str, Any], request_id: str) -> WorkerResult | None:
    """The result for ``request_id`` in a message from the results topic;
    None for a step, or anything about another request."""
    payload = message.get("payload")
    if not isinstance(payload, dict) or payload.get("request_id") != request_id:
        return None
    if message.get("event_type") == STEP_EVENT or not isinstance(payload.get("outcome"), str):
        return None
    return WorkerResult(
        request_id=request_id, action=str(payload.get("action")),
        instance_uuid=str(payload.get("instance_uuid")), outcome=payload["outcome"],
        reason=payload.get("reason"), failed_step=payload.get("failed_step"),
        reverted_steps=tuple(payload.get("reverted_steps") or ()),
        leftovers=tuple(payload.get("leftovers") or ()))


def parse_step(message: Mapping[str, Any], request_id: str) -> tuple[str, str] | None:
    """(step, state) of a step message for ``request_id``, else None."""
    payload = message.get("payload")
    if message.get("event_type") != STEP_EVENT or not isinstance(payload, dict) or \
            payload.get("request_id") != request_id:
        return None
    return str(payload.get("step")), str(payload.get("state"))
