"""The instance state machine: what each request means in each state."""

from __future__ import annotations

import pytest
from automaton import exceptions as fsm_exc

from rescue_flow import requests
from rescue_flow.engine import states
from rescue_flow.engine.states import Decision


@pytest.mark.parametrize(("state", "action", "decision"), [
    (states.ACTIVE, requests.RESCUE, Decision.RUN),
    (states.ACTIVE, requests.UNRESCUE, Decision.NOTHING_TO_DO),
    (states.RESCUED, requests.RESCUE, Decision.NOTHING_TO_DO),
    (states.RESCUED, requests.UNRESCUE, Decision.RUN),
    (states.LEFTOVERS, requests.RESCUE, Decision.CLEAN_UP_FIRST),
    (states.LEFTOVERS, requests.UNRESCUE, Decision.CLEAN_UP_FIRST),
    (states.RESCUING, requests.UNRESCUE, Decision.WAIT),
    (states.UNRESCUING, requests.RESCUE, Decision.WAIT),
    (states.QUARANTINED, requests.RESCUE, Decision.REFUSE),
    (states.QUARANTINED, requests.UNRESCUE, Decision.REFUSE),
])
def test_each_state_gives_each_request_one_meaning(state, action, decision):
    assert states.decide(state, action) is decision


def test_a_rescue_moves_through_rescuing_to_rescued():
    lifecycle = states.InstanceLifecycle(states.ACTIVE)

    assert lifecycle.fire(states.START_RESCUE) == states.RESCUING
    assert lifecycle.fire(states.SUCCEEDED) == states.RESCUED


def test_a_reverted_unrescue_leaves_the_instance_rescued():
    lifecycle = states.InstanceLifecycle(states.RESCUED)
    lifecycle.fire(states.START_UNRESCUE)

    assert lifecycle.fire(states.REVERTED) == states.RESCUED


def test_a_failed_revert_quarantines_and_only_reset_leaves_quarantine():
    lifecycle = states.InstanceLifecycle(states.ACTIVE)
    lifecycle.fire(states.START_RESCUE)
    lifecycle.fire(states.REVERT_FAILED)

    with pytest.raises(fsm_exc.NotFound):
        lifecycle.fire(states.START_RESCUE)
    assert lifecycle.fire(states.RESET) == states.ACTIVE


def test_an_illegal_transition_raises_instead_of_passing_silently():
    lifecycle = states.InstanceLifecycle(states.RESCUED)

    with pytest.raises(fsm_exc.NotFound):
        lifecycle.fire(states.START_RESCUE)
