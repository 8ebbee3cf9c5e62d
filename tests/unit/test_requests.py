"""Requests refuse bad identifiers with a clear error, whatever brought them."""

from __future__ import annotations

import datetime

import pytest

from rescue_flow import exceptions
from rescue_flow.requests import Request

UUID = "5b5a7b4e-3c0c-4d55-9a4c-2f0f3b1e9d01"


@pytest.mark.parametrize("bad", [
    "not-a-uuid", "../../etc/passwd",
    "{5b5a7b4e-3c0c-4d55-9a4c-2f0f3b1e9d01}", "5b5a7b4e3c0c4d559a4c2f0f3b1e9d01", "",
])
def test_an_instance_id_that_is_not_a_canonical_uuid_is_refused(bad):
    with pytest.raises(exceptions.InvalidIdentifier):
        Request("rescue", bad, "req-1")


def test_an_image_id_that_would_leave_the_cache_folder_is_refused():
    with pytest.raises(exceptions.InvalidIdentifier, match="image id"):
        Request("rescue", UUID, "req-1", image_id="../../Windows/System32/x")


@pytest.mark.parametrize("value", [12, None, ["a"]])
def test_an_instance_id_of_the_wrong_type_is_refused(value):
    with pytest.raises(exceptions.InvalidIdentifier, match="UUID string"):
        Request("rescue", value, "req-1")


def test_an_unknown_action_is_refused():
    with pytest.raises(exceptions.InvalidRequest, match="action"):
        Request("reboot", UUID, "req-1")


def test_an_unrescue_takes_no_image():
    with pytest.raises(exceptions.InvalidRequest, match="no image"):
        Request("unrescue", UUID, "req-1", image_id=UUID)


def test_missing_fields_are_named():
    with pytest.raises(exceptions.InvalidRequest, match="instance_uuid, request_id"):
        Request.from_dict({"action": "rescue"})


def test_a_request_round_trips_through_a_dict():
    request = Request("rescue", UUID, "req-1", host="hv1", image_id=UUID,
                      image_generation=2, source="nova")

    assert Request.from_dict(request.to_dict()) == request


def test_an_upper_case_uuid_is_accepted_and_made_canonical():
    request = Request("rescue", UUID.upper(), "req-1")

    assert request.instance_uuid == UUID


# -- fields of the Nova driver's requests (docs/protocol.md) -------------------

DRIVER_FIELDS = {"start_by": "2026-12-06T23:41:00+00:00",
                 "deadline": "2026-12-06T23:52:00+00:00"}


@pytest.mark.parametrize("field, value, says", [
    ("start_by", "tomorrow", "start_by must be an ISO 8601 time"),
    ("deadline", "2026-12-06T23:52:00", "deadline must carry its UTC offset"),
    ("deadline", 1765064000, "deadline must be an ISO 8601 time"),
    ("shutdown_timeout", -1, "shutdown_timeout must be a whole number"),
    ("shutdown_timeout", True, "shutdown_timeout must be a whole number"),
    ("shutdown_timeout", 1.5, "shutdown_timeout must be a whole number"),
    ("nova_request_id", "", "nova_request_id must be a non-empty string"),
    ("image_os_secure_boot", "sometimes", "image os_secure_boot must be one of"),
    ("image_os_type", "", "image_os_type must be a non-empty string"),
])
def test_bad_driver_fields_are_refused_with_their_name(field, value, says) -> None:
    with pytest.raises(exceptions.InvalidRequest, match=says):
        Request("rescue", UUID, "r", **{**DRIVER_FIELDS, field: value})


def test_past_compares_with_the_given_time() -> None:
    request = Request("rescue", UUID, "r", **DRIVER_FIELDS)
    just_before = datetime.datetime(2026, 12, 6, 23, 40, 59, tzinfo=datetime.timezone.utc)
    assert not request.past("start_by", just_before)
    assert request.past("start_by", just_before + datetime.timedelta(seconds=2))
    assert not Request("rescue", UUID, "r").past("deadline")


@pytest.mark.parametrize("bad", [
    "C:\\OpenStack\\Instances\\instance-1\\configdrive-rescue.iso",  # not an object
    {"path": "C:\\x\\configdrive-rescue.iso"},                         # no format
    {"path": "C:\\x\\configdrive-rescue.iso", "format": "udf"},        # not Nova's
    {"path": "", "format": "iso9660"},
    {"path": 7, "format": "iso9660"},
])
def test_a_malformed_config_drive_is_refused(bad):
    with pytest.raises(exceptions.InvalidRequest, match="config_drive"):
        Request("rescue", UUID, "req-1", config_drive=bad)


def test_a_config_drive_keeps_only_its_path_and_format():
    drive = {"path": "C:\\x\\configdrive-rescue.iso", "format": "iso9660", "admin_pass": "x"}

    request = Request("rescue", UUID, "req-1", config_drive=drive)

    assert request.config_drive == {"path": drive["path"], "format": "iso9660"}
    assert "admin_pass" not in str(request.to_dict())


def test_an_unrescue_takes_no_config_drive():
    with pytest.raises(exceptions.InvalidRequest, match="no config drive"):
        Request("unrescue", UUID, "req-1",
                config_drive={"path": "C:\\x\\configdrive-rescue.iso", "format": "iso9660"})
