"""The state is an SQLite database: a change writes the rows it changed,
nothing when nothing changed, and a process reads the state again only when
another process has committed since."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost, store
from rescue_flow.simhost.model import HostState
from rescue_flow.simhost.oswin import constants

UUID1 = "11111111-2222-4333-8444-555555555555"
UUID2 = "22222222-2222-4333-8444-555555555555"
OFF = constants.HYPERV_VM_STATE_DISABLED


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.sqlite"), "/sim/instances")
    host.add_image("img", 1, "vhdx")
    host.add_vm("vm1", UUID1, "img")
    host.add_vm("vm2", UUID2, "img")
    return host


def _rows(host: SimulatedHost) -> dict[tuple[str, str], str]:
    """Every row of the state (not the call log), read by a connection of its own."""
    conn = sqlite3.connect(host.state_file)
    try:
        rows = {(section, key): value for section, key, value in
                conn.execute("SELECT section, key, value FROM entries")}
        rows.update({("meta", name): value for name, value in
                     conn.execute("SELECT name, value FROM meta")})
        return rows
    finally:
        conn.close()


def _on_disk(host: SimulatedHost) -> dict:
    return store.StateStore(host.state_file).read_from_disk()


@pytest.fixture
def other_process(host):
    """Run calls through a connection and cache of their own, as another process would."""
    path = os.path.realpath(host.state_file)

    def run(call):
        mine = store._registry.pop(path)
        try:
            return call(SimulatedHost(host.state_file))
        finally:
            store._registry.pop(path).close()
            store._registry[path] = mine
    return run


def test_read_only_calls_write_no_state(host):
    before = _rows(host)
    host.vmutils.get_vm_state("vm1")
    host.vmutils.list_instance_notes()
    host.view()
    assert _rows(host) == before
    assert [c["method"] for c in host.calls()][-2:] == ["get_vm_state",
                                                       "list_instance_notes"]


def test_a_change_that_changes_nothing_writes_nothing(host):
    host.vmutils.set_vm_state("vm1", OFF)
    before = _rows(host)
    host.vmutils.set_vm_state("vm1", OFF)  # already off
    assert _rows(host) == before


def test_a_change_writes_only_the_rows_it_changed(host):
    before = _rows(host)
    host.vmutils.set_vm_state("vm1", OFF)
    after = _rows(host)
    assert {key for key in after if after[key] != before.get(key)} == {("vms", "vm1")}


def test_the_database_holds_exactly_the_state_this_process_sees(host):
    host.vmutils.set_vm_state("vm1", OFF)
    host.pathutils.makedirs("/sim/instances/vm3")
    with store.StateStore(host.state_file).locked() as tx:
        assert _on_disk(host) == tx.data


def test_an_unchanged_state_is_not_read_again(host, monkeypatch):
    host.vmutils.get_vm_state("vm1")
    reads: list[int] = []
    real = store._read_all
    monkeypatch.setattr(store, "_read_all", lambda conn: reads.append(1) or real(conn))
    host.vmutils.get_vm_state("vm1")
    host.vmutils.set_vm_state("vm1", OFF)  # our own change: nothing to read
    host.vmutils.get_vm_state("vm1")
    assert reads == []


def test_a_change_by_another_process_is_read(host, other_process):
    host.vmutils.get_vm_state("vm1")  # cached
    other_process(lambda h: h.vmutils.set_vm_state("vm2", OFF))
    assert host.vmutils.get_vm_state("vm2") == OFF


def test_new_entries_keep_their_order_for_every_reader(host, other_process):
    for name in ("z", "a", "m"):
        host.pathutils.makedirs(f"/sim/instances/{name}")
    host.pathutils.rmtree("/sim/instances/a")
    host.pathutils.makedirs("/sim/instances/a")
    with store.StateStore(host.state_file).locked() as tx:
        mine = list(tx.data["dirs"])
    assert list(_on_disk(host)["dirs"]) == mine


def test_a_file_that_is_not_a_host_database_gives_a_clear_error(host):
    store._registry.pop(os.path.realpath(host.state_file)).close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(host.state_file + suffix):
            os.remove(host.state_file + suffix)
    with open(host.state_file, "w") as f:
        f.write('{"format": 1, "an old JSON state": true}' * 200)
    with pytest.raises(ValueError, match="not a simulated host"):
        SimulatedHost(host.state_file).vmutils.list_instances()


def test_init_replaces_whatever_the_state_file_held(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"format": 1}' * 100)
    host = SimulatedHost.init(str(path), "/sim/instances")
    assert host.vmutils.list_instances() == []


def test_a_call_that_fails_half_way_leaves_the_database_and_memory_unchanged(host):
    before, rows = host.view_json(), _rows(host)

    def half_apply(state: HostState, args: dict) -> None:
        state.data["vms"]["vm1"]["memory_mb"] = 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        host.vmutils._engine.invoke("update_vm", {}, half_apply, mutates=True)
    assert host.view_json() == before
    assert _rows(host) == rows


def test_a_removed_state_file_is_reported_not_silently_recreated(host):
    os.remove(host.state_file)
    with pytest.raises(FileNotFoundError, match="sim init"):
        host.vmutils.list_instances()
    assert not os.path.exists(host.state_file)


def test_the_tests_run_with_every_change_checked_against_a_full_comparison():
    assert store.VERIFY_TOUCHED


def test_a_call_that_edits_an_entry_it_did_not_touch_fails_under_the_tests(host):
    def sneaky(state: HostState, args: dict) -> None:
        state.data["vms"]["vm2"]["memory_mb"] = 1  # not through state.vm()

    with pytest.raises(AssertionError, match="did not mark"):
        host.vmutils._engine.invoke("update_vm", {}, sneaky, mutates=True)
    assert _on_disk(host)["vms"]["vm2"]["memory_mb"] != 1
    assert host.view()["vms"]["vm2"]["memory_mb"] != 1


def test_an_entry_handed_out_through_the_state_is_written(host):
    def through_the_state(state: HostState, args: dict) -> None:
        state.vm("vm2")["memory_mb"] = 2048

    host.vmutils._engine.invoke("update_vm", {}, through_the_state, mutates=True)
    assert json.loads(_rows(host)[("vms", "vm2")])["memory_mb"] == 2048


def test_a_slow_call_queues_for_the_lock_once(host, monkeypatch):
    host.set_latency("get_vm_state", 0.01)
    host.vmutils.get_vm_state("vm1")  # cached now
    taken: list[int] = []
    real = store.StateStore.locked
    monkeypatch.setattr(store.StateStore, "locked",
                        lambda self: taken.append(1) or real(self))
    host.vmutils.get_vm_state("vm1")
    assert taken == [1]


def test_a_latency_set_by_another_process_applies_to_the_next_call(host, other_process):
    host.vmutils.get_vm_state("vm1")  # cached, without latency
    other_process(lambda h: h.set_latency("get_vm_state", 0.3))
    started = time.monotonic()
    host.vmutils.get_vm_state("vm1")
    assert time.monotonic() - started >= 0.3


def test_a_result_handed_out_uncopied_must_hold_no_part_of_the_state(host):
    assert host.vmutils.list_instance_notes() == [("vm1", [UUID1]), ("vm2", [UUID2])]
    with pytest.raises(AssertionError, match="built fresh"):
        host.vmutils._engine.invoke("list_instance_notes", {},
                                    lambda state, args: [state.data["vms"]["vm1"]["notes"]],
                                    mutates=False, fresh_result=True)
