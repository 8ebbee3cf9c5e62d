"""What changed between two states, as a record, and replaying it.

The store (rescue_flow.simhost.store) writes a record as rows: the entries
it sets or deletes, the values it replaces whole.

The state is a dict of sections (``vms``, ``files``, ``dirs``, ...: dicts
keyed by name) and a few plain values (``next_mac``, ...). A record names
only what differs::

    {"set":   {section: {key: new value}},   # changed or added entries
     "del":   {section: [key, ...]},         # removed entries
     "whole": {name: value},                 # plain values, whole sections
     "drop":  [name, ...]}                   # names gone from the state

Entries are compared with ``==``, which for nested dicts and lists runs in
C: finding the one VM a call changed among 200 costs microseconds, where
serialising all of them cost milliseconds.

Order. Replaying keeps the order of a section's keys as Python does when
the change is made live (kept keys stay where they were, new keys go
last). Other orders cannot be told apart from that in a record, so if the
live order differs, the record carries the whole section instead: a
process that loads the rows iterates the VMs, files and folders
exactly as the writer does. Inside an entry, ``==`` ignores the order of a
dict's keys: an entry whose only change is such an order is not recorded.
No os-win call of the simulated host makes one (inside a VM, only
``slots`` lose and regain keys, and slots are always read in slot order).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

_MISSING = object()


def clone(value: Any) -> Any:
    """A deep copy of JSON-like data (pickle is much faster than deepcopy)."""
    return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def diff(before: dict[str, Any], after: dict[str, Any],
         touched: Mapping[str, set[str] | None] | None = None) -> dict[str, Any] | None:
    """The record that turns ``before`` into ``after``; None if they are equal.

    ``touched`` (see model.HostState): in the sections it names, when no
    key was added or removed, only the entries it lists are compared.
    """
    record: dict[str, Any] = {}
    for name, value in after.items():
        old = before.get(name, _MISSING)
        keys = touched.get(name) if touched is not None and name in touched else None
        if keys is not None and isinstance(old, dict) and isinstance(value, dict):
            _record_touched(record, name, old, value, keys)
            continue
        # In C: an unchanged section costs little. == ignores the order of
        # keys, which is kept for sections (see the module's docstring).
        if old is not _MISSING and old == value \
                and (not isinstance(value, dict) or list(old) == list(value)):
            continue
        section = _section_diff(old, value) if isinstance(old, dict) \
            and isinstance(value, dict) else None
        if section is None:
            record.setdefault("whole", {})[name] = value
            continue
        changed, removed = section
        if changed:
            record.setdefault("set", {})[name] = changed
        if removed:
            record.setdefault("del", {})[name] = removed
    dropped = [name for name in before if name not in after]
    if dropped:
        record["drop"] = dropped
    return record or None


def _record_touched(record: dict[str, Any], name: str, old: dict[str, Any],
                    new: dict[str, Any], keys: set[str]) -> None:
    """Record a section's change from its touched entries and the keys that
    came or went (set operations on keys, in C)."""
    added = removed = None
    if old.keys() != new.keys():
        added, removed = new.keys() - old.keys(), old.keys() - new.keys()
    changed = {key: new[key] for key in keys
               if key in old and key in new and old[key] != new[key]}
    if added:
        # New keys go last, in the order they were added (as live).
        ordered = added if len(added) == 1 else (key for key in new if key in added)
        changed.update((key, new[key]) for key in ordered)
    if changed:
        record.setdefault("set", {})[name] = changed
    if removed:
        record.setdefault("del", {})[name] = list(removed)


def _section_diff(old: dict[str, Any], new: dict[str, Any]
                  ) -> tuple[dict[str, Any], list[str]] | None:
    get = old.get
    changed = {key: value for key, value in new.items() if get(key, _MISSING) != value}
    removed = [key for key in old if key not in new] if len(old) > len(new) - len(changed) \
        else []
    if removed or any(key not in old for key in changed):
        replayed = [key for key in old if key in new] + [key for key in new if key not in old]
        if list(new) != replayed:
            return None  # reordered: only the whole section says so
    elif list(new) != list(old):  # the same keys, yet a key was deleted and re-added
        return None
    return changed, removed


def replays_to(before: dict[str, Any], record: dict[str, Any] | None,
               after: dict[str, Any]) -> bool:
    """Whether replaying ``record`` on ``before`` gives ``after``, with each
    section's keys in the same order (what the store promises)."""
    replayed = clone(before)
    if record is not None:
        apply(replayed, clone(record))
    return replayed == after and all(
        list(replayed[name]) == list(value) for name, value in after.items()
        if isinstance(value, dict) and isinstance(replayed.get(name), dict))


def apply(state: dict[str, Any], record: dict[str, Any]) -> None:
    """Replay ``record`` on ``state`` in place (``record`` becomes part of it)."""
    for name in record.get("drop", ()):
        state.pop(name, None)
    for name, value in record.get("whole", {}).items():
        state[name] = value
    for name, keys in record.get("del", {}).items():
        section = state[name]
        for key in keys:
            section.pop(key, None)
    for name, entries in record.get("set", {}).items():
        state[name].update(entries)
