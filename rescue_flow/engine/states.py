"""The instance state machine: one table of every state, event and move.

An instance is in one state: read off the host (:mod:`.observe`), the
quarantine list, or the flow in flight. Two kinds of events move it:

- a request (``rescue``, ``unrescue``): the table says what it means in
  each state (run a flow, nothing to do, wait behind the flow in flight,
  refuse) and, when a flow runs, the state it runs in;
- a flow's end (``succeeded`` ...), and the operator's ``reset``.

:class:`InstanceMachine` follows :data:`TRANSITIONS` (through ``automaton``,
the library TaskFlow's own engine is built on) and nothing else: an event
the current state does not accept raises :class:`IllegalTransition`, which
names the state, the event and what the state accepts, instead of doing
nothing. docs/architecture.md draws the same table (a test compares them).
"""

from __future__ import annotations

import dataclasses
import enum

from automaton import exceptions as automaton_exceptions
from automaton import machines

from rescue_flow import exceptions, requests

ACTIVE = "active"
RESCUING = "rescuing"
RESCUED = "rescued"
UNRESCUING = "unrescuing"
LEFTOVERS = "leftovers"
CLEANING = "cleaning"
QUARANTINED = "quarantined"
STATES = (ACTIVE, RESCUING, RESCUED, UNRESCUING, LEFTOVERS, CLEANING, QUARANTINED)

# Events: the two requests, the ends of a flow, the operator's reset.
RESCUE = requests.RESCUE
UNRESCUE = requests.UNRESCUE
SUCCEEDED = "succeeded"
SUCCEEDED_WITH_LEFTOVERS = "succeeded_with_leftovers"
REVERTED = "reverted"
REVERT_FAILED = "revert_failed"
RESET = "reset"

# The flows a transition may run (flows/: the kind of each flow record).
CLEANUP = "cleanup"


class Act(str, enum.Enum):
    """What the runner does on a transition."""

    RUN = "run"  # run the transition's flow; its end is the next event
    NOTHING_TO_DO = "nothing_to_do"  # the instance already is where asked
    WAIT = "wait"  # a flow is in flight: wait for it, then read the state again
    REFUSE = "refuse"  # quarantined: an operator must look first
    MOVE = "move"  # a flow ended, or a reset: only the state changes


@dataclasses.dataclass(frozen=True)
class Transition:
    source: str
    event: str
    target: str
    act: Act = Act.MOVE
    flow: str | None = None  # with Act.RUN: rescue, unrescue or cleanup


_T = Transition
# Every move an instance can make; nothing else is legal.
TRANSITIONS: tuple[Transition, ...] = (
    _T(ACTIVE, RESCUE, RESCUING, Act.RUN, requests.RESCUE),
    _T(ACTIVE, UNRESCUE, ACTIVE, Act.NOTHING_TO_DO),
    _T(RESCUED, RESCUE, RESCUED, Act.NOTHING_TO_DO),
    _T(RESCUED, UNRESCUE, UNRESCUING, Act.RUN, requests.UNRESCUE),
    _T(LEFTOVERS, RESCUE, CLEANING, Act.RUN, CLEANUP),
    _T(LEFTOVERS, UNRESCUE, CLEANING, Act.RUN, CLEANUP),
    _T(QUARANTINED, RESCUE, QUARANTINED, Act.REFUSE),
    _T(QUARANTINED, UNRESCUE, QUARANTINED, Act.REFUSE),
    _T(RESCUING, RESCUE, RESCUING, Act.WAIT),
    _T(RESCUING, UNRESCUE, RESCUING, Act.WAIT),
    _T(UNRESCUING, RESCUE, UNRESCUING, Act.WAIT),
    _T(UNRESCUING, UNRESCUE, UNRESCUING, Act.WAIT),
    _T(CLEANING, RESCUE, CLEANING, Act.WAIT),
    _T(CLEANING, UNRESCUE, CLEANING, Act.WAIT),
    _T(RESCUING, SUCCEEDED, RESCUED),
    _T(RESCUING, REVERTED, ACTIVE),
    _T(RESCUING, REVERT_FAILED, QUARANTINED),
    _T(UNRESCUING, SUCCEEDED, ACTIVE),
    _T(UNRESCUING, SUCCEEDED_WITH_LEFTOVERS, LEFTOVERS),
    _T(UNRESCUING, REVERTED, RESCUED),
    _T(UNRESCUING, REVERT_FAILED, QUARANTINED),
    _T(CLEANING, SUCCEEDED, ACTIVE),
    _T(CLEANING, SUCCEEDED_WITH_LEFTOVERS, LEFTOVERS),
    _T(CLEANING, REVERTED, LEFTOVERS),
    _T(CLEANING, REVERT_FAILED, QUARANTINED),
    _T(QUARANTINED, RESET, ACTIVE),
)
_BY_KEY = {(t.source, t.event): t for t in TRANSITIONS}
# The state a flow of each kind runs in (so a resumed flow knows where it is).
FLOW_STATES = {t.flow: t.target for t in TRANSITIONS if t.flow is not None}

NOTHING_TO_DO_REASONS = {
    requests.RESCUE: "the instance is already rescued",
    requests.UNRESCUE: "the instance is not rescued",
}


class IllegalTransition(exceptions.RescueFlowError):
    """An event the instance's current state does not accept (a bug, or a
    state the host shows that no flow should have left)."""

    def __init__(self, state: str, event: str) -> None:
        accepted = sorted(t.event for t in TRANSITIONS if t.source == state)
        super().__init__(f"instance is {state}: {event!r} is not accepted there "
                         f"(accepted: {', '.join(accepted) or 'nothing'})")
        self.state = state
        self.event = event


def accepts(state: str, event: str) -> bool:
    return (state, event) in _BY_KEY


class InstanceMachine:
    """One instance's state, moved only along :data:`TRANSITIONS`."""

    def __init__(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"unknown instance state {state!r}")
        self._machine = machines.FiniteMachine()
        for name in STATES:
            self._machine.add_state(name)
        for t in TRANSITIONS:
            self._machine.add_transition(t.source, t.target, t.event)
        self._machine.initialize(state)
        self.history: list[Transition] = []

    @property
    def state(self) -> str:
        return str(self._machine.current_state)

    def fire(self, event: str) -> Transition:
        """Move on ``event``; return the transition taken (its act says what to do)."""
        transition = _BY_KEY.get((self.state, event))
        if transition is None:
            raise IllegalTransition(self.state, event)
        try:
            self._machine.process_event(event)
        except automaton_exceptions.NotFound:  # pragma: no cover - same table
            raise IllegalTransition(self.state, event) from None
        self.history.append(transition)
        return transition
