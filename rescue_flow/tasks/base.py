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

from rescue_flow import records
from rescue_flow.hyperv.host import HyperVHost


class HostTask(task.Task):
    """A task that drives one Hyper-V host."""

    def __init__(self, host: HyperVHost, **kwargs: Any) -> None:
        super().__init__(name=type(self).__name__, **kwargs)
        self.host = host


def config(original: dict[str, Any]) -> records.VMConfig:
    """The recorded configuration, which travels between tasks as a plain dict."""
    return records.VMConfig.from_dict(original)
