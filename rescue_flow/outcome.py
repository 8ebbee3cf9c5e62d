"""How a request ended, as the CLI, the listener and notifications report it."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Outcome(str, enum.Enum):
    SUCCESS = "success"
    NOTHING_TO_DO = "nothing_to_do"  # already rescued / not rescued: not a failure
    FAILED = "failed"  # the flow failed and was reverted: the host is as before
    REFUSED = "refused"  # validation or state refused it before any change
    QUARANTINED = "quarantined"  # a revert failed: the host needs an operator
    DUPLICATE = "duplicate"  # this request id was accepted before: not run again

    @property
    def ok(self) -> bool:
        return self in (Outcome.SUCCESS, Outcome.NOTHING_TO_DO, Outcome.DUPLICATE)


@dataclasses.dataclass
class Result:
    """The end of one request."""

    request_id: str
    action: str
    instance_uuid: str
    host: str
    outcome: Outcome
    reason: str | None = None
    failed_step: str | None = None
    reverted_steps: list[str] = dataclasses.field(default_factory=list)
    step_durations: dict[str, float] = dataclasses.field(default_factory=dict)
    # Leftovers an irreversible clean-up step could not remove yet (unrescue).
    leftovers: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        known = {field.name for field in dataclasses.fields(cls)}
        fields = {key: value for key, value in data.items() if key in known}
        fields["outcome"] = Outcome(data["outcome"])
        return cls(**fields)
