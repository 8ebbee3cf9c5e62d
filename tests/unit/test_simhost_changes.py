"""A journal record replays exactly the change it was made from, key order
included, and names nothing that did not change."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rescue_flow.simhost import changes

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)
SECTIONS = st.dictionaries(KEYS, VALUES, max_size=5)
STATES = st.fixed_dictionaries({"vms": SECTIONS, "files": SECTIONS},
                               optional={"next_mac": st.integers(0, 9), "extra": SECTIONS})


def _same(a: dict, b: dict) -> bool:
    """Equal, with each section's keys in the same order (the order of the
    sections and inside an entry is not kept: see changes' docstring)."""
    return a == b and all(
        list(a[name]) == list(b[name]) for name in a if isinstance(a[name], dict))


@settings(max_examples=300, deadline=None)
@given(STATES, STATES)
def test_replaying_the_diff_gives_the_later_state(before, after):
    record = changes.diff(before, after)
    replayed = changes.clone(before)
    if record is not None:
        changes.apply(replayed, json.loads(json.dumps(record)))  # as the journal stores it
    assert _same(replayed, after)
    assert (record is None) == _same(before, after)


@settings(max_examples=100, deadline=None)
@given(STATES, KEYS)
def test_a_key_deleted_and_added_again_moves_last_in_the_replay_too(state, key):
    after = changes.clone(state)
    value = after["vms"].pop(key, "new")
    after["vms"][key] = value
    replayed = changes.clone(state)
    record = changes.diff(state, after)
    assert (record is None) == (list(state["vms"]) == list(after["vms"]))
    if record is not None:
        changes.apply(replayed, record)
    assert _same(replayed, after)


def test_a_record_names_only_the_entry_that_changed():
    before = {"vms": {f"vm{i}": {"state": 2, "slots": {"0": "a.vhdx"}} for i in range(50)},
              "files": {"a": {"path": "a.vhdx"}}, "next_mac": 1}
    after = changes.clone(before)
    after["vms"]["vm7"]["state"] = 3
    del after["vms"]["vm9"]
    after["files"]["b"] = {"path": "b.vhdx"}
    after["next_mac"] = 2
    assert changes.diff(before, after) == {
        "set": {"vms": {"vm7": {"state": 3, "slots": {"0": "a.vhdx"}}},
                "files": {"b": {"path": "b.vhdx"}}},
        "del": {"vms": ["vm9"]},
        "whole": {"next_mac": 2},
    }
    assert changes.diff(before, changes.clone(before)) is None


def test_a_section_in_a_new_order_is_carried_whole():
    before = {"vms": {"a": 1, "b": 2}}
    after = {"vms": {"b": 2, "a": 1}}
    assert changes.diff(before, after) == {"whole": {"vms": {"b": 2, "a": 1}}}
