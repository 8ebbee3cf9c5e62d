"""A rescue or unrescue request, whatever brought it (Nova, the client, the CLI).

Parsing and validation of the identifiers happen here, once, so every entry
point refuses the same bad input with the same clear error.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from rescue_flow import exceptions

RESCUE = "rescue"
UNRESCUE = "unrescue"
ACTIONS = (RESCUE, UNRESCUE)
SECURE_BOOT_VALUES = (None, "required", "disabled", "optional")  # Glance's os_secure_boot


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
    source: str = "cli"  # "nova", "client", "cli", "demo"
    # Rescue only: the rescue image's Glance properties os_secure_boot
    # ("required", "disabled", "optional") and os_type ("windows", "linux"...),
    # when the caller knows them (Nova's driver does). The rescue VM gets
    # Secure Boot when os_secure_boot is "required", as compute-hyperv does.
    image_os_secure_boot: str | None = None
    image_os_type: str | None = None

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
        if self.image_os_type is not None and not isinstance(self.image_os_type, str):
            raise exceptions.InvalidRequest("image os_type must be a string")
        if not isinstance(self.request_id, str) or not self.request_id:
            raise exceptions.InvalidRequest("request id must be a non-empty string")

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
