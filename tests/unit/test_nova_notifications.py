"""rescue_flow.messaging.nova: Nova's rescue and unrescue notifications become requests.

The samples are nova's doc/notification_samples (tests/fixtures/nova_samples,
see SOURCES.txt there): the current payloads and those of the Hyper-V era
(pre_shares_2024.1), raw with "$ref"s and resolved.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from msgkit import SAMPLES, load_sample, sample_files

from rescue_flow import exceptions, requests
from rescue_flow.commands.demo_loop import legacy_event
from rescue_flow.commands.demo_loop import load_sample as package_sample
from rescue_flow.messaging import bus, nova

SAMPLE_UUID = "178b0921-8f85-4257-88b6-2e743b5a975c"
SAMPLE_IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
SAMPLE_RESCUE_IMAGE = "a2459075-d96c-40d5-893e-577ff92e721c"
SAMPLE_REQUEST = "req-5b6c791d-5709-4f36-8fbe-c3e02869e35d"
IMAGE = "8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a02"
INSTANCE = "9b2d4e6f-1a3c-4b5d-8e7f-0a1b2c3d4e02"
START_SAMPLES = [p for p in sample_files() if p.name.endswith("rescue-start.json")]
OTHER_SAMPLES = [p for p in sample_files() if not p.name.endswith("rescue-start.json")]


def _id(path: Path) -> str:
    return str(path.relative_to(SAMPLES))


def test_the_fixtures_hold_both_generations_raw_and_resolved() -> None:
    assert len(START_SAMPLES) == 8  # 2 events x 2 generations x raw/resolved
    assert {p.parent.name for p in START_SAMPLES} == {
        "nova_samples", "resolved", "pre_shares_2024.1"}


@pytest.mark.parametrize("raw", [p for p in sample_files() if "resolved" not in p.parts],
                         ids=_id)
def test_resolving_refs_gives_the_resolved_sample(raw: Path) -> None:
    assert load_sample(raw) == json.loads((raw.parent / "resolved" / raw.name).read_text())


@pytest.mark.parametrize("path", START_SAMPLES, ids=_id)
def test_every_rescue_and_unrescue_start_sample_parses(path: Path) -> None:
    request = nova.parse(load_sample(path))
    assert request is not None
    assert request.instance_uuid == SAMPLE_UUID
    assert request.host == "compute"
    assert request.source == "nova"
    assert request.request_id == f"nova:{SAMPLE_REQUEST}:{request.action}:{SAMPLE_UUID}"
    if "unrescue" in path.name:
        assert (request.action, request.image_id) == (requests.UNRESCUE, None)
    else:
        assert (request.action, request.image_id) == (requests.RESCUE, SAMPLE_RESCUE_IMAGE)


@pytest.mark.parametrize("path", OTHER_SAMPLES, ids=_id)
def test_other_events_are_ignored_not_refused(path: Path) -> None:
    assert nova.parse(load_sample(path)) is None


def test_the_demo_ships_the_current_resolved_samples() -> None:
    for name in ("instance-rescue-start.json", "instance-unrescue-start.json"):
        assert package_sample(name) == load_sample(SAMPLES / "resolved" / name)


def _rescue_sample() -> dict[str, Any]:
    return load_sample(SAMPLES / "resolved" / "instance-rescue-start.json")


def test_rescue_without_rescue_image_uses_the_instances_image() -> None:
    message = _rescue_sample()
    message["payload"]["nova_object.data"]["rescue_image_ref"] = None
    assert nova.parse(message).image_id == SAMPLE_IMAGE


def test_volume_backed_instance_leaves_the_image_to_the_host() -> None:
    message = _rescue_sample()
    message["payload"]["nova_object.data"].update(rescue_image_ref=None, image_uuid="")
    assert nova.parse(message).image_id is None


def test_nova_request_id_from_the_context_wins() -> None:
    request = nova.parse(_rescue_sample(), {"request_id": "req-from-context"})
    assert request.request_id == f"nova:req-from-context:rescue:{SAMPLE_UUID}"


def test_without_any_request_id_the_message_id_names_the_request() -> None:
    message = _rescue_sample()
    message["payload"]["nova_object.data"]["request_id"] = None
    message["message_id"] = "6a9e4a2c-2f76-4d4c-b6b6-0a59ac2d0c3e"
    assert nova.parse(message).request_id == "nova:6a9e4a2c-2f76-4d4c-b6b6-0a59ac2d0c3e"


# -- the legacy format ----------------------------------------------------------

def _legacy(action: str = "rescue") -> dict[str, Any]:
    event_type, payload, _ = legacy_event(action, INSTANCE, "hv-7", IMAGE)
    return {"event_type": event_type, "payload": payload, "publisher_id": "compute.hv-7",
            "message_id": "1f0d3a48-9f6e-4f66-a1a4-3d1c2b0a9e88", "priority": "INFO"}


def test_legacy_rescue_parses_with_the_instances_image_and_generation() -> None:
    request = nova.parse(_legacy(), {"request_id": "req-1"})
    assert request == requests.Request(
        action="rescue", instance_uuid=INSTANCE, request_id=f"nova:req-1:rescue:{INSTANCE}",
        host="hv-7", image_id=IMAGE, image_generation=2, source="nova",
        nova_request_id="req-1")


def test_legacy_unrescue_parses() -> None:
    request = nova.parse(_legacy("unrescue"), {"request_id": "req-2"})
    assert (request.action, request.instance_uuid, request.host, request.image_id) == (
        "unrescue", INSTANCE, "hv-7", None)


def test_legacy_falls_back_to_base_image_ref() -> None:
    message = _legacy()
    message["payload"]["image_ref_url"] = "http://glance:9292/images/"
    assert nova.parse(message).image_id == IMAGE


def test_both_formats_of_one_nova_action_share_a_request_id() -> None:
    versioned = _rescue_sample()
    versioned["payload"]["nova_object.data"].update(uuid=INSTANCE, host="hv-7")
    legacy = _legacy()
    context = {"request_id": "req-same-api-call"}
    assert nova.parse(versioned, context).request_id == nova.parse(legacy, context).request_id


# -- the envelope ---------------------------------------------------------------

def _envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {"oslo.version": "2.0", "oslo.message": json.dumps(message)}


def test_envelope_2_0_as_dict_text_and_bytes_parses_like_the_bare_message() -> None:
    bare = _rescue_sample()
    wrapped = _envelope(bare)
    for body in (wrapped, json.dumps(wrapped), json.dumps(wrapped).encode()):
        assert nova.parse(body) == nova.parse(bare)


@pytest.mark.parametrize(("body", "says"), [
    (b"\xff\xfe not text", "not UTF-8"),
    ("{not json", "message is not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({"oslo.version": "1.0", "oslo.message": "{}"}, "unsupported envelope version"),
    ({"oslo.version": "2.0", "oslo.message": "{nope"}, "oslo.message is not JSON"),
    ({"oslo.version": "2.0", "oslo.message": "[]"}, "oslo.message is not a JSON object"),
    ({"oslo.version": "2.0"}, "no oslo.message"),
])
def test_broken_wire_bodies_are_refused_with_a_clear_error(body: Any, says: str) -> None:
    with pytest.raises(bus.InvalidMessage, match=says):
        nova.parse(body)


# -- bad input ------------------------------------------------------------------

def _data(message: dict[str, Any]) -> dict[str, Any]:
    return message["payload"]["nova_object.data"]


BAD_VERSIONED = [
    ("payload not an object", lambda m: m.update(payload=["x"]), "payload must be an object"),
    ("no nova_object.data", lambda m: m["payload"].pop("nova_object.data"),
     "no nova_object.data"),
    ("uuid missing", lambda m: _data(m).pop("uuid"), "no uuid"),
    ("uuid not a UUID", lambda m: _data(m).update(uuid="not-a-uuid"), "not a UUID"),
    ("uuid a number", lambda m: _data(m).update(uuid=12), "must be a UUID string"),
    ("uuid in braces", lambda m: _data(m).update(uuid="{" + SAMPLE_UUID + "}"),
     "not in canonical UUID form"),
    ("host missing", lambda m: _data(m).pop("host"), "no host"),
    ("host with a wildcard", lambda m: _data(m).update(host="hv-#"), "host must be"),
    ("host with a space", lambda m: _data(m).update(host="hv 1"), "host must be"),
    ("host a list", lambda m: _data(m).update(host=["hv"]), "host must be"),
    ("rescue image not a UUID", lambda m: _data(m).update(rescue_image_ref="cirros"),
     "rescue_image_ref is not a UUID"),
    ("image id escaping the folder", lambda m: _data(m).update(
        rescue_image_ref=None, image_uuid="../../Windows/System32"), "image_uuid is not a UUID"),
    ("event type a number", lambda m: m.update(event_type=7), "event_type must be a string"),
]


@pytest.mark.parametrize(("change", "says"), [(c, s) for _, c, s in BAD_VERSIONED],
                         ids=[name for name, _, _ in BAD_VERSIONED])
def test_bad_versioned_notifications_are_refused_with_a_clear_error(change, says) -> None:
    message = copy.deepcopy(_rescue_sample())
    change(message)
    with pytest.raises(exceptions.InvalidRequest, match=says):
        nova.parse(message)


BAD_LEGACY = [
    ("instance_id missing", lambda p: p.pop("instance_id"), "no instance_id"),
    ("instance_id not a UUID", lambda p: p.update(instance_id="i-1"), "not a UUID"),
    ("image_ref_url a number", lambda p: p.update(image_ref_url=5), "must be a string"),
    ("image_ref_url not ending in a UUID", lambda p: p.update(
        image_ref_url="http://glance/images/cirros"), "image_ref_url is not a UUID"),
    ("image_meta a string", lambda p: p.update(image_meta="x"), "image_meta must be an object"),
]


@pytest.mark.parametrize(("change", "says"), [(c, s) for _, c, s in BAD_LEGACY],
                         ids=[name for name, _, _ in BAD_LEGACY])
def test_bad_legacy_notifications_are_refused_with_a_clear_error(change, says) -> None:
    message = _legacy()
    change(message["payload"])
    with pytest.raises(exceptions.InvalidRequest, match=says):
        nova.parse(message)


def test_a_notification_without_any_id_is_refused() -> None:
    message = _legacy()
    del message["message_id"]
    with pytest.raises(nova.InvalidNotification, match="no message_id"):
        nova.parse(message)


def test_instance_uuid_of_reads_both_formats_and_tolerates_junk() -> None:
    assert nova.instance_uuid_of(_rescue_sample()) == SAMPLE_UUID
    assert nova.instance_uuid_of(_legacy()) == INSTANCE
    assert nova.instance_uuid_of({"payload": "junk"}) is None
    assert nova.instance_uuid_of({"payload": {"instance_id": 3}}) is None


def test_read_recognises_parses_and_validates_a_rescue_once() -> None:
    event = nova.read(_rescue_sample(), {"request_id": SAMPLE_REQUEST})

    assert (event.action, event.instance_uuid, event.nova_request_id, event.error) == (
        "rescue", SAMPLE_UUID, SAMPLE_REQUEST, None)
    assert event.request == nova.parse(_rescue_sample(), {"request_id": SAMPLE_REQUEST})


def test_read_leaves_other_events_alone() -> None:
    message = _rescue_sample()
    message["event_type"] = "instance.rescue.end"

    event = nova.read(message)

    assert (event.action, event.request, event.error) == (None, None, None)


def test_read_says_why_a_malformed_event_is_not_a_request() -> None:
    message = _rescue_sample()
    message["payload"]["nova_object.data"]["uuid"] = "not-a-uuid"

    event = nova.read(message)

    assert event.request is None and event.action == "rescue"
    assert event.error == "instance uuid is not a UUID: 'not-a-uuid'"
    assert event.instance_uuid == "not-a-uuid"  # as sent, for the error's reader
