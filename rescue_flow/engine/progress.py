"""Watching a flow run: each step's transitions, durations, and a callback.

The callback is how the CLI prints "StopInstance: RUNNING" as the worker goes,
and how a client waiting on a request gets the same lines later on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from taskflow import states as tf_states
from taskflow.types import notifier

StepCallback = Callable[["StepEvent"], None]


@dataclasses.dataclass(frozen=True)
class StepEvent:
    flow: str
    step: str
    state: str  # TaskFlow's: RUNNING, SUCCESS, FAILURE, REVERTING, REVERTED, ...
    seconds: float | None = None  # set when a step finishes or is reverted


class StepRecorder:
    """Registers on an engine's atom notifier and keeps what it saw."""

    def __init__(self, flow_name: str, callback: StepCallback | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.flow_name = flow_name
        self._callback = callback
        self._clock = clock
        self._started: dict[tuple[str, str], float] = {}
        self.durations: dict[str, float] = {}
        self.executed: list[str] = []
        self.failed_step: str | None = None
        self.reverted: list[str] = []
        self.revert_failed: str | None = None

    def attach(self, engine: Any) -> None:
        engine.atom_notifier.register(notifier.Notifier.ANY, self._on_atom)

    def _on_atom(self, state: str, details: dict[str, Any]) -> None:
        step = details.get("task_name") or details.get("atom_name") or "?"
        now = self._clock()
        seconds = None
        if state == tf_states.RUNNING:
            self._started[(step, "run")] = now
            self.executed.append(step)
        elif state in (tf_states.SUCCESS, tf_states.FAILURE):
            seconds = now - self._started.get((step, "run"), now)
            self.durations[step] = seconds
            if state == tf_states.FAILURE:
                self.failed_step = step
        elif state == tf_states.REVERTING:
            self._started[(step, "revert")] = now
        elif state in (tf_states.REVERTED, tf_states.REVERT_FAILURE):
            seconds = now - self._started.get((step, "revert"), now)
            if step in self.executed:
                if state == tf_states.REVERTED:
                    self.reverted.append(step)
                else:
                    self.revert_failed = step
        else:
            return
        if self._callback is not None and (step in self.executed or
                                           state == tf_states.RUNNING):
            self._callback(StepEvent(self.flow_name, step, state, seconds))
