"""What every rescue-flow task shares: the host, a stable name, the record type.

Atom names are TaskFlow's persistence keys, so each task is named after its
class and the names must not change. The host comes in through the
constructor (it cannot be persisted); everything else comes in through
``execute``'s arguments, whose names are the data contract between tasks.

Reverts converge: each one brings the host back to how it was before its
step, checking first, so it does the right thing whether its step finished,
half-finished, or never ran, and whether it runs once or, after a crash,
twice. A revert that fails raises: TaskFlow then stops reverting and the
runner quarantines the instance, since automatic action on a host in an
unknown state could make it worse.
"""

from __future__ import annotations

from typing import Any

from taskflow import task

from rescue_flow import exceptions, records, requests
from rescue_flow.hyperv.host import HyperVHost


class HostTask(task.Task):
    """A task that drives one Hyper-V host."""

    # Steps before a flow's point of no return do not start once the
    # request's deadline (the Nova driver's, docs/protocol.md) has passed:
    # the flow reverts, and reports in time. Clean-up after that point runs
    # whatever the time: what it finishes is already what the caller sees.
    stops_at_deadline = True

    def __init__(self, host: HyperVHost, **kwargs: Any) -> None:
        super().__init__(name=type(self).__name__, **kwargs)
        self.host = host
        # Set by the runner on each run's own copy of the task.
        self.deadline: str | None = None

    def pre_execute(self) -> None:
        # TaskFlow's executor calls this right before execute(); what it
        # raises fails the step like execute() would, and the flow reverts.
        deadline = requests.parse_time(self.deadline, "deadline")
        if self.stops_at_deadline and deadline is not None and deadline < requests.utcnow():
            raise exceptions.DeadlineExceeded(
                f"not started: the request's deadline {self.deadline} has passed")


def config(original: dict[str, Any]) -> records.VMConfig:
    """The recorded configuration, which travels between tasks as a plain dict."""
    return records.VMConfig.from_dict(original)
