"""The instance state machine: one table, every state reachable, every other
event refused by name."""

from __future__ import annotations

import itertools

import pytest

from rescue_flow import requests
from rescue_flow.engine import states
from rescue_flow.engine.states import Act, IllegalTransition, InstanceMachine

EVENTS = sorted({t.event for t in states.TRANSITIONS})


@pytest.mark.parametrize("state, action, act", [
    (states.ACTIVE, requests.RESCUE, Act.RUN),
    (states.ACTIVE, requests.UNRESCUE, Act.NOTHING_TO_DO),
    (states.RESCUED, requests.RESCUE, Act.NOTHING_TO_DO),
    (states.RESCUED, requests.UNRESCUE, Act.RUN),
    (states.LEFTOVERS, requests.RESCUE, Act.RUN),
    (states.LEFTOVERS, requests.UNRESCUE, Act.RUN),
    (states.RESCUING, requests.RESCUE, Act.WAIT),
    (states.RESCUING, requests.UNRESCUE, Act.WAIT),
    (states.UNRESCUING, requests.RESCUE, Act.WAIT),
    (states.UNRESCUING, requests.UNRESCUE, Act.WAIT),
    (states.CLEANING, requests.RESCUE, Act.WAIT),
    (states.CLEANING, requests.UNRESCUE, Act.WAIT),
    (states.QUARANTINED, requests.RESCUE, Act.REFUSE),
    (states.QUARANTINED, requests.UNRESCUE, Act.REFUSE),
])
def test_each_request_means_one_act_in_each_state(state, action, act):
    assert InstanceMachine(state).fire(action).act is act


def test_a_request_that_runs_a_flow_names_it_and_the_state_it_runs_in():
    assert [(t.source, t.event, t.flow, t.target) for t in states.TRANSITIONS
            if t.act is Act.RUN] == [
        (states.ACTIVE, "rescue", "rescue", states.RESCUING),
        (states.RESCUED, "unrescue", "unrescue", states.UNRESCUING),
        (states.LEFTOVERS, "rescue", "cleanup", states.CLEANING),
        (states.LEFTOVERS, "unrescue", "cleanup", states.CLEANING),
    ]
    assert states.FLOW_STATES == {"rescue": states.RESCUING,
                                  "unrescue": states.UNRESCUING,
                                  "cleanup": states.CLEANING}


def test_every_state_is_reachable_from_active():
    reached, frontier = {states.ACTIVE}, [states.ACTIVE]
    while frontier:
        source = frontier.pop()
        for t in states.TRANSITIONS:
            if t.source == source and t.target not in reached:
                reached.add(t.target)
                frontier.append(t.target)
    assert reached == set(states.STATES)


def test_every_state_can_get_back_to_active():
    for state in states.STATES:
        seen, frontier = {state}, [state]
        while frontier and states.ACTIVE not in seen:
            source = frontier.pop()
            for t in states.TRANSITIONS:
                if t.source == source and t.target not in seen:
                    seen.add(t.target)
                    frontier.append(t.target)
        assert states.ACTIVE in seen, state


def test_a_rescue_a_failed_unrescue_and_an_unrescue_with_leftovers_follow_the_table():
    machine = InstanceMachine(states.ACTIVE)
    moves = [requests.RESCUE, states.SUCCEEDED, requests.UNRESCUE, states.REVERTED,
             requests.UNRESCUE, states.SUCCEEDED_WITH_LEFTOVERS, requests.RESCUE,
             states.SUCCEEDED, requests.RESCUE]
    assert [machine.fire(event).target for event in moves] == [
        states.RESCUING, states.RESCUED, states.UNRESCUING, states.RESCUED,
        states.UNRESCUING, states.LEFTOVERS, states.CLEANING, states.ACTIVE,
        states.RESCUING]
    assert [t.event for t in machine.history] == moves


def test_a_failed_revert_quarantines_and_only_reset_leaves_quarantine():
    machine = InstanceMachine(states.RESCUED)
    machine.fire(requests.UNRESCUE)
    machine.fire(states.REVERT_FAILED)
    assert machine.state == states.QUARANTINED
    assert machine.fire(requests.RESCUE).act is Act.REFUSE
    assert machine.state == states.QUARANTINED
    assert machine.fire(states.RESET).target == states.ACTIVE


@pytest.mark.parametrize("state, event", [
    (state, event) for state, event in itertools.product(states.STATES, EVENTS)
    if not states.accepts(state, event)])
def test_an_event_a_state_does_not_accept_is_refused_by_name(state, event):
    machine = InstanceMachine(state)

    with pytest.raises(IllegalTransition) as raised:
        machine.fire(event)

    assert f"instance is {state}: {event!r} is not accepted there" in str(raised.value)
    assert machine.state == state  # nothing moved
    assert machine.history == []


def test_the_refusal_lists_what_the_state_accepts():
    with pytest.raises(IllegalTransition, match=r"\(accepted: rescue, reset, unrescue\)"):
        InstanceMachine(states.QUARANTINED).fire(states.SUCCEEDED)


def test_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match="unknown instance state 'paused'"):
        InstanceMachine("paused")


def test_each_state_and_event_pair_is_in_the_table_at_most_once():
    keys = [(t.source, t.event) for t in states.TRANSITIONS]
    assert len(keys) == len(set(keys))
