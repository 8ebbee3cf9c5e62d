"""Nova's rescue and unrescue notifications, turned into :class:`Request` objects.

Nova sends each event in up to two formats (its ``[notifications]
notification_format``):

- versioned, topic ``versioned_notifications``: event types
  ``instance.rescue.start`` / ``instance.unrescue.start``, publisher
  ``nova-compute:<host>``, payload ``InstanceActionRescuePayload`` /
  ``InstanceActionPayload`` whose fields sit under ``nova_object.data``
  (``uuid``, ``host``, ``image_uuid``, and ``rescue_image_ref`` on a rescue);
- legacy, topic ``notifications``: ``compute.instance.rescue.start`` /
  ``compute.instance.unrescue.start``, publisher ``compute.<host>``, a flat
  payload (``instance_id``, ``host``, ``image_ref_url``, ``image_meta``, and
  ``rescue_image_name`` on a rescue: a name, never an id).

The rescue image is ``rescue_image_ref`` when Nova gives one, else the
instance's own image (``image_uuid``; in the legacy format the last part of
``image_ref_url``, or ``image_meta.base_image_ref``); when even that is empty
(a volume-backed instance) the host works it out, and refuses.

The request id names the Nova action, not the message: Nova's request id (the
same in both formats, and on a redelivery) plus the action and the instance,
so the worker runs an event once however many copies arrive. Without a
request id in the context, the message id stands in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from rescue_flow import exceptions, requests
from rescue_flow.messaging.bus import InvalidMessage, check_host_name, unwrap

EVENT_ACTIONS = {
    "instance.rescue.start": requests.RESCUE,
    "instance.unrescue.start": requests.UNRESCUE,
    "compute.instance.rescue.start": requests.RESCUE,
    "compute.instance.unrescue.start": requests.UNRESCUE,
}
_LEGACY_PREFIX = "compute."
# Glance's image property for the Hyper-V VM generation (the Hyper-V driver's).
_MACHINE_TYPES = {"hyperv-gen1": 1, "hyperv-gen2": 2}


LOG = logging.getLogger(__name__)


class InvalidNotification(InvalidMessage):
    """A Nova notification that cannot be read as a rescue or unrescue request."""


@dataclasses.dataclass(frozen=True)
class NovaEvent:
    """One Nova notification as read: the Request it asks for, or why it is none."""

    event_type: Any
    message_id: Any
    action: str | None  # None: not a rescue or unrescue event; nothing else is set
    instance_uuid: str | None  # as sent, unchecked: for log lines and error answers
    nova_request_id: Any  # as sent in the context: for log lines
    request: requests.Request | None = None
    error: str | None = None  # why a rescue or unrescue event is not a request


def read(message: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> NovaEvent:
    """Read a notification once: recognise it, then parse and validate it into
    a Request (:func:`parse`).

    Reading is a function of the message alone: an error in it, expected
    (InvalidRequest) or not, cannot be cured by a redelivery, so it becomes
    the event's ``error`` (answered at once), not an exception (retried).
    """
    action = action_of(message.get("event_type"))
    event = NovaEvent(message.get("event_type"), message.get("message_id"), action,
                      instance_uuid_of(message), (context or {}).get("request_id"))
    if action is None:
        return event
    try:
        request = parse(message, context)
    except exceptions.InvalidRequest as exc:
        return dataclasses.replace(event, error=str(exc))
    except Exception as exc:
        LOG.exception("Nova notification %s could not be read", event.message_id)
        return dataclasses.replace(
            event, error=f"cannot be read: {type(exc).__name__}: {exc}")
    return dataclasses.replace(event, request=request)


def action_of(event_type: Any) -> str | None:
    """``rescue``/``unrescue`` for the events we handle, None for any other."""
    return EVENT_ACTIONS.get(event_type) if isinstance(event_type, str) else None


def instance_uuid_of(message: Mapping[str, Any]) -> str | None:
    """The instance uuid as sent (unchecked), to order events per instance."""
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return None
    data = payload.get("nova_object.data")
    value = data.get("uuid") if isinstance(data, dict) else payload.get("instance_id")
    return value.lower() if isinstance(value, str) else None


def parse(message: Any, context: Mapping[str, Any] | None = None) -> requests.Request | None:
    """The request a Nova notification asks for; None if it is another event.

    Raises InvalidNotification (an InvalidRequest) for a rescue or unrescue
    event that is malformed.
    """
    message = unwrap(message)
    event_type = message.get("event_type")
    if not isinstance(event_type, str):
        raise InvalidNotification(f"event_type must be a string, got {event_type!r}")
    action = action_of(event_type)
    if action is None:
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise InvalidNotification(
            f"{event_type}: payload must be an object, got {type(payload).__name__}")
    if event_type.startswith(_LEGACY_PREFIX):
        fields = _legacy_fields(event_type, payload, action)
    else:
        fields = _versioned_fields(event_type, payload, action)
    nova_request_id = _nova_request_id(message, context)
    if nova_request_id is None:
        message_id = message.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise InvalidNotification("notification has no message_id and no request_id")
        request_id = f"nova:{message_id}"
    else:
        request_id = requests.nova_action_request_id(nova_request_id, action,
                                                     fields["instance_uuid"])
    return requests.Request(action=action, request_id=request_id, source="nova",
                            nova_request_id=nova_request_id, **fields)


def _versioned_fields(event_type: str, payload: dict[str, Any],
                      action: str) -> dict[str, Any]:
    data = payload.get("nova_object.data")
    if not isinstance(data, dict):
        raise InvalidNotification(f"{event_type}: payload has no nova_object.data object")
    instance_uuid = _required(event_type, data, "uuid")
    fields: dict[str, Any] = {
        "instance_uuid": requests.canonical_uuid(instance_uuid, "instance uuid"),
        "host": check_host_name(_required(event_type, data, "host"))}
    if action == requests.RESCUE:
        fields["image_id"] = (_image(data.get("rescue_image_ref"), "rescue_image_ref")
                              or _image(data.get("image_uuid"), "image_uuid"))
    return fields


def _legacy_fields(event_type: str, payload: dict[str, Any], action: str) -> dict[str, Any]:
    instance_uuid = _required(event_type, payload, "instance_id")
    fields: dict[str, Any] = {
        "instance_uuid": requests.canonical_uuid(instance_uuid, "instance uuid"),
        "host": check_host_name(_required(event_type, payload, "host"))}
    if action == requests.RESCUE:
        image_meta = payload.get("image_meta") or {}
        if not isinstance(image_meta, dict):
            raise InvalidNotification(f"{event_type}: image_meta must be an object")
        url = payload.get("image_ref_url")
        if url is not None and not isinstance(url, str):
            raise InvalidNotification(f"{event_type}: image_ref_url must be a string")
        # "<glance>/images/<image id>"; nothing after the last "/" when the
        # instance boots from a volume.
        fields["image_id"] = (_image((url or "").rpartition("/")[2] or None,
                                     "image_ref_url")
                              or _image(image_meta.get("base_image_ref"), "base_image_ref"))
        machine_type = image_meta.get("hw_machine_type")
        fields["image_generation"] = (_MACHINE_TYPES.get(machine_type)
                                      if isinstance(machine_type, str) else None)
    return fields


def _required(event_type: str, data: Mapping[str, Any], name: str) -> Any:
    if data.get(name) in (None, ""):
        raise InvalidNotification(f"{event_type}: payload has no {name}")
    return data[name]


def _image(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    return requests.canonical_uuid(value, what)


def _nova_request_id(message: Mapping[str, Any],
                     context: Mapping[str, Any] | None) -> str | None:
    nova_request_id = (context or {}).get("request_id")
    if not nova_request_id:
        data = message["payload"].get("nova_object.data")
        nova_request_id = data.get("request_id") if isinstance(data, dict) else None
    return nova_request_id if isinstance(nova_request_id, str) and nova_request_id else None
