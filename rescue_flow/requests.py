"""A rescue or unrescue request, whatever brought it (Nova, the client, the CLI).

Parsing and validation of the identifiers happen here, once, so every entry
point refuses the same bad input with the same clear error.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

from rescue_flow import exceptions

RESCUE = "rescue"
UNRESCUE = "unrescue"
ACTIONS = (RESCUE, UNRESCUE)
CONFIG_DRIVE_FORMATS = ("iso9660", "vfat")  # Nova's [DEFAULT] config_drive_format
SECURE_BOOT_VALUES = (None, "required", "disabled", "optional")  # Glance's os_secure_boot


def nova_action_request_id(nova_request_id: str, action: str, instance_uuid: str) -> str:
    """The request id of one Nova action, the same from its notification and its
    compute driver (docs/protocol.md), so the worker runs the action once."""
    return f"nova:{nova_request_id}:{action}:{instance_uuid}"


def canonical_uuid(value: Any, what: str) -> str:
    """Return ``value`` as a lower-case hyphenated UUID or raise InvalidIdentifier."""
    if not isinstance(value, str):
        raise exceptions.InvalidIdentifier(
            f"{what} must be a UUID string, got {type(value).__name__}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise exceptions.InvalidIdentifier(f"{what} is not a UUID: {value!r}") from None
    canonical = str(parsed)
    # uuid.UUID accepts braces, "urn:uuid:" and missing hyphens; Nova never
    # sends those. Case is folded: every id is used in its canonical form, so
    # two spellings of one id cannot escape the per-instance serialization.
    if value.lower() != canonical:
        raise exceptions.InvalidIdentifier(
            f"{what} is not in canonical UUID form: {value!r}")
    return canonical


@dataclasses.dataclass(frozen=True)
class Request:
    """One request to rescue or unrescue one instance on one host."""

    action: str
    instance_uuid: str
    request_id: str
    host: str | None = None
    # Rescue only: the cached image to boot; None means the image the
    # instance was booted from (the parent of its differencing root disk).
    image_id: str | None = None
    # The rescue image's VM generation if the caller knows it (Glance's
    # hw_machine_type); the host cannot tell for a VHDX image.
    image_generation: int | None = None
    source: str = "cli"  # "nova", "nova-driver", "client", "cli", "demo"
    # Nova's own request id (req-<uuid>) when Nova asked: its notifications
    # and its compute driver's context share it (docs/protocol.md).
    nova_request_id: str | None = None
    # Sent by the Nova driver (docs/protocol.md), UTC ISO 8601 times on the
    # host's own clock: a request not started by ``start_by`` is refused
    # untouched; a step not started by ``deadline`` is not run, the flow
    # reverts. Both None: no limit.
    start_by: str | None = None
    deadline: str | None = None
    # Seconds of clean shutdown before the hard power-off (Nova's
    # shutdown_timeout for this instance); None: [hyperv] soft_shutdown_timeout.
    shutdown_timeout: int | None = None
    # Rescue only: the rescue image's Glance properties os_secure_boot
    # ("required", "disabled", "optional") and os_type ("windows", "linux"...),
    # when the caller knows them (Nova's driver does). The rescue VM gets
    # Secure Boot when os_secure_boot is "required", as compute-hyperv does.
    image_os_secure_boot: str | None = None
    image_os_type: str | None = None
    # Rescue only: the rescue config drive the Nova driver built with Nova's
    # builder in the instance's folder, holding the rescue password:
    # {"path": ..., "format": "iso9660"|"vfat"}. A path, never the password.
    # The flow attaches it to the rescue VM and deletes it on revert or at
    # unrescue; None (manual requests, notifications): no config drive.
    config_drive: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise exceptions.InvalidRequest(
                f"action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        object.__setattr__(self, "instance_uuid",
                           canonical_uuid(self.instance_uuid, "instance uuid"))
        if self.image_id is not None:
            object.__setattr__(self, "image_id",
                               canonical_uuid(self.image_id, "image id"))
        if self.action == UNRESCUE and self.image_id is not None:
            raise exceptions.InvalidRequest("an unrescue request takes no image id")
        if self.image_generation not in (None, 1, 2):
            raise exceptions.InvalidRequest(
                f"image generation must be 1 or 2, got {self.image_generation!r}")
        if self.image_os_secure_boot not in SECURE_BOOT_VALUES:
            raise exceptions.InvalidRequest(
                f"image os_secure_boot must be one of required, disabled, optional; "
                f"got {self.image_os_secure_boot!r}")
        if not isinstance(self.request_id, str) or not self.request_id:
            raise exceptions.InvalidRequest("request id must be a non-empty string")
        for name in ("nova_request_id", "image_os_type"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise exceptions.InvalidRequest(f"{name} must be a non-empty string")
        for name in ("start_by", "deadline"):
            parse_time(getattr(self, name), name)
        if self.config_drive is not None:
            object.__setattr__(self, "config_drive", _check_config_drive(self))
        timeout = self.shutdown_timeout
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, int) or timeout < 0):
            raise exceptions.InvalidRequest(
                f"shutdown_timeout must be a whole number of seconds >= 0, got {timeout!r}")

    def past(self, limit: str, now: datetime.datetime | None = None) -> bool:
        """True when the time named ``limit`` ("start_by", "deadline") has passed."""
        when = parse_time(getattr(self, limit), limit)
        return when is not None and (now or utcnow()) > when

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"action", "instance_uuid", "request_id"} - set(data)
        if missing:
            raise exceptions.InvalidRequest(
                f"request is missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _check_config_drive(request: Request) -> dict[str, str]:
    """``config_drive`` with exactly its two fields, or InvalidRequest. Where
    the path points is checked against the instance's folder in the flow
    (rescue_flow.layout.rescue_config_drive), which knows the folder."""
    drive = request.config_drive
    if request.action != RESCUE:
        raise exceptions.InvalidRequest("an unrescue request takes no config drive")
    if not isinstance(drive, dict) or not isinstance(drive.get("path"), str) or \
            not drive["path"] or drive.get("format") not in CONFIG_DRIVE_FORMATS:
        raise exceptions.InvalidRequest(
            "config_drive must be {\"path\": <file>, \"format\": \"iso9660\" or "
            f"\"vfat\"}}, got {drive!r}")
    return {"path": drive["path"], "format": drive["format"]}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(when: datetime.datetime) -> str:
    """A UTC time as the protocol writes it: ``2026-12-06T23:40:00.123456+00:00``."""
    return when.astimezone(datetime.timezone.utc).isoformat()


def parse_time(value: Any, what: str) -> datetime.datetime | None:
    """A protocol time (ISO 8601 with a UTC offset) or None; InvalidRequest otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise exceptions.InvalidRequest(f"{what} must be an ISO 8601 time, got {value!r}")
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise exceptions.InvalidRequest(
            f"{what} must be an ISO 8601 time, got {value!r}") from None
    if when.tzinfo is None:
        raise exceptions.InvalidRequest(f"{what} must carry its UTC offset, got {value!r}")
    return when
