"""The instance state machine: what a request means in each state.

States are read from the host (:mod:`rescue_flow.engine.observe`), from the
quarantine list, and from the flow in flight. TaskFlow runs the transitions;
this machine keeps them legal: a transition the table does not hold raises,
instead of silently doing something nobody designed.
"""

from __future__ import annotations

import enum

from automaton import machines

from rescue_flow import requests

ACTIVE = "active"
RESCUING = "rescuing"
RESCUED = "rescued"
UNRESCUING = "unrescuing"
LEFTOVERS = "leftovers"
CLEANING = "cleaning"
QUARANTINED = "quarantined"

# Events.
START_RESCUE = "start_rescue"
START_UNRESCUE = "start_unrescue"
START_CLEANUP = "start_cleanup"
SUCCEEDED = "succeeded"
SUCCEEDED_WITH_LEFTOVERS = "succeeded_with_leftovers"
REVERTED = "reverted"
REVERT_FAILED = "revert_failed"
RESET = "reset"

_TRANSITIONS = [
    (ACTIVE, RESCUING, START_RESCUE),
    (RESCUING, RESCUED, SUCCEEDED),
    (RESCUING, ACTIVE, REVERTED),
    (RESCUING, QUARANTINED, REVERT_FAILED),
    (RESCUED, UNRESCUING, START_UNRESCUE),
    (UNRESCUING, ACTIVE, SUCCEEDED),
    (UNRESCUING, LEFTOVERS, SUCCEEDED_WITH_LEFTOVERS),
    (UNRESCUING, RESCUED, REVERTED),
    (UNRESCUING, QUARANTINED, REVERT_FAILED),
    (LEFTOVERS, CLEANING, START_CLEANUP),
    (CLEANING, ACTIVE, SUCCEEDED),
    (CLEANING, LEFTOVERS, SUCCEEDED_WITH_LEFTOVERS),
    (CLEANING, LEFTOVERS, REVERTED),
    (CLEANING, QUARANTINED, REVERT_FAILED),
    (QUARANTINED, ACTIVE, RESET),
]


class Decision(str, enum.Enum):
    RUN = "run"
    NOTHING_TO_DO = "nothing_to_do"
    CLEAN_UP_FIRST = "clean_up_first"
    WAIT = "wait"
    REFUSE = "refuse"


# (state, action) -> decision; the start event follows from the decision.
_DECISIONS = {
    (ACTIVE, requests.RESCUE): Decision.RUN,
    (ACTIVE, requests.UNRESCUE): Decision.NOTHING_TO_DO,
    (RESCUED, requests.RESCUE): Decision.NOTHING_TO_DO,
    (RESCUED, requests.UNRESCUE): Decision.RUN,
    (LEFTOVERS, requests.RESCUE): Decision.CLEAN_UP_FIRST,
    (LEFTOVERS, requests.UNRESCUE): Decision.CLEAN_UP_FIRST,
}

START_EVENTS = {
    requests.RESCUE: START_RESCUE,
    requests.UNRESCUE: START_UNRESCUE,
}

NOTHING_TO_DO_REASONS = {
    requests.RESCUE: "the instance is already rescued",
    requests.UNRESCUE: "the instance is not rescued",
}


def decide(state: str, action: str) -> Decision:
    """What a request for ``action`` means when the instance is in ``state``."""
    if state == QUARANTINED:
        return Decision.REFUSE
    if state in (RESCUING, UNRESCUING, CLEANING):
        return Decision.WAIT
    return _DECISIONS[(state, action)]


def build_machine(start: str) -> machines.FiniteMachine:
    machine = machines.FiniteMachine()
    for state in (ACTIVE, RESCUING, RESCUED, UNRESCUING, LEFTOVERS, CLEANING,
                  QUARANTINED):
        machine.add_state(state)
    for source, target, event in _TRANSITIONS:
        machine.add_transition(source, target, event)
    machine.initialize(start)
    return machine


class InstanceLifecycle:
    """One instance's state while a request is handled."""

    def __init__(self, start: str) -> None:
        self._machine = build_machine(start)

    @property
    def state(self) -> str:
        return str(self._machine.current_state)

    def fire(self, event: str) -> str:
        """Move on ``event``; raises automaton.exceptions.NotFound if illegal."""
        self._machine.process_event(event)
        return self.state
