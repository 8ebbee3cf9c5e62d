"""The state is a snapshot plus a journal of changes: a change appends what
it changed, nothing is written when nothing changed, and a process re-reads
only what another process wrote."""

from __future__ import annotations

import json
import os
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
    host = SimulatedHost.init(str(tmp_path / "host.json"), "/sim/instances")
    host.add_image("img", 1, "vhdx")
    host.add_vm("vm1", UUID1, "img")
    host.add_vm("vm2", UUID2, "img")
    return host


def _journal(host: SimulatedHost) -> str:
    return host.state_file + ".journal"


def _stamps(host: SimulatedHost) -> tuple[tuple[int, int, int], ...]:
    return tuple((st.st_ino, st.st_mtime_ns, st.st_size)
                 for st in map(os.stat, (host.state_file, _journal(host))))


def _records(host: SimulatedHost) -> list[dict]:
    with open(_journal(host)) as f:
        return [json.loads(line) for line in f][1:]  # without the header


def _on_disk(host: SimulatedHost) -> dict:
    return store.StateStore(host.state_file).read_from_disk()


@pytest.fixture
def other_process(host):
    """Run calls through a cache of their own, as another process would."""
    path = os.path.realpath(host.state_file)

    def run(call):
        mine = store._registry.pop(path)
        try:
            return call(SimulatedHost(host.state_file))
        finally:
            store._registry.pop(path).forget()
            store._registry[path] = mine
    return run


def test_read_only_calls_write_nothing(host):
    before = _stamps(host)
    host.vmutils.get_vm_state("vm1")
    host.vmutils.get_vm_storage_paths("vm1")
    host.view()
    assert _stamps(host) == before


def test_a_change_that_changes_nothing_writes_nothing(host):
    before = _stamps(host)
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_ENABLED)
    host.vmutils.detach_vm_disk("vm1", "/no/such.vhdx", is_physical=False)
    assert _stamps(host) == before


def test_a_change_appends_only_what_it_changed(host):
    snapshot = Path(host.state_file).read_text()
    records = len(_records(host))
    host.vmutils.set_vm_state("vm1", OFF)
    assert Path(host.state_file).read_text() == snapshot
    new = _records(host)[records:]
    assert len(new) == 1
    assert list(new[0]) == ["set"] and list(new[0]["set"]) == ["vms"]
    assert list(new[0]["set"]["vms"]) == ["vm1"]  # not vm2, not the whole host
    assert new[0]["set"]["vms"]["vm1"]["state"] == OFF
    assert sorted(os.listdir(os.path.dirname(host.state_file))) == [
        "host.json", "host.json.calls", "host.json.journal", "host.json.lock"]


def test_the_files_hold_exactly_the_state_this_process_sees(host):
    host.vmutils.set_vm_state("vm1", OFF)
    host.vmutils.destroy_vm("vm2")
    host.pathutils.makedirs("/sim/extra")
    with store.StateStore(host.state_file).locked() as tx:
        cached = json.dumps(tx.data)  # the order of keys included
    assert json.dumps(_on_disk(host)) == cached


def test_an_unchanged_state_is_not_read_again(host, monkeypatch):
    reads: list[str] = []
    for name in ("_read_snapshot", "_read_journal"):
        real = getattr(store.StateStore, name)
        monkeypatch.setattr(store.StateStore, name,
                            lambda self, *a, _n=name, _r=real: reads.append(_n) or _r(self, *a))
    for _ in range(5):
        host.vmutils.get_vm_state("vm1")
    host.vmutils.set_vm_state("vm1", OFF)
    host.vmutils.get_vm_state("vm1")
    assert reads == []


def test_a_change_by_another_process_is_read_from_the_journal_alone(host, other_process,
                                                                    monkeypatch):
    host.vmutils.get_vm_state("vm1")  # this process has the state cached
    other_process(lambda h: h.vmutils.set_vm_state("vm1", OFF))
    snapshots: list[int] = []
    real = store.StateStore._read_snapshot
    monkeypatch.setattr(store.StateStore, "_read_snapshot",
                        lambda self, shared: snapshots.append(1) or real(self, shared))
    assert host.vmutils.get_vm_state("vm1") == OFF
    assert snapshots == []


def test_a_snapshot_replaced_by_another_process_is_read_again(host):
    data = _on_disk(host)
    data["vms"]["vm1"]["state"] = OFF
    tmp = host.state_file + ".other"
    with open(tmp, "w") as f:
        json.dump(data, f)  # no journal epoch: the old journal does not apply
    os.replace(tmp, host.state_file)
    assert host.vmutils.get_vm_state("vm1") == OFF
    assert host.vmutils.vm_exists("vm2")


def test_a_long_journal_is_folded_into_a_new_snapshot(host, monkeypatch, other_process):
    monkeypatch.setattr(store, "_COMPACT_MIN_BYTES", 0)  # at the snapshot's size
    epoch = json.loads(Path(_journal(host)).read_text().splitlines()[0])["epoch"]
    for index in range(40):
        host.pathutils.makedirs(f"/sim/d{index}")
    with open(_journal(host)) as f:
        header = json.loads(f.readline())
    with open(host.state_file) as f:
        assert json.load(f)[store.EPOCH_KEY] == header["epoch"] != epoch
    assert os.path.getsize(_journal(host)) <= os.path.getsize(host.state_file)
    assert all(host.pathutils.exists(f"/sim/d{index}") for index in range(40))
    assert other_process(lambda h: h.view()) == host.view()


def test_a_snapshot_whose_journal_was_not_yet_replaced_ignores_the_old_one(host):
    """A crash between writing a new snapshot and starting its journal."""
    host.vmutils.set_vm_state("vm1", OFF)
    data = _on_disk(host)
    data["vms"]["vm2"]["memory_mb"] = 4096  # only in the new snapshot
    data[store.EPOCH_KEY] = "a-newer-epoch"
    with open(host.state_file + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(host.state_file + ".tmp", host.state_file)
    on_disk = _on_disk(host)
    assert on_disk["vms"]["vm1"]["state"] == OFF
    assert on_disk["vms"]["vm2"]["memory_mb"] == 4096


def test_a_torn_last_line_is_ignored_and_not_appended_to(host):
    host.vmutils.set_vm_state("vm1", OFF)
    with open(_journal(host), "a") as f:
        f.write('{"set": {"vms": {"vm2"')  # a power loss mid-line
    assert _on_disk(host)["vms"]["vm1"]["state"] == OFF
    store._registry.pop(os.path.realpath(host.state_file)).forget()
    host.vmutils.set_vm_state("vm2", OFF)  # a line after the torn one would be lost
    fresh = _on_disk(host)
    assert fresh["vms"]["vm1"]["state"] == OFF
    assert fresh["vms"]["vm2"]["state"] == OFF


def test_a_corrupt_snapshot_gives_a_clear_error(host):
    with open(host.state_file, "w") as f:
        f.write("{not json")
    with pytest.raises(store.StateFileCorrupt, match=r"not valid JSON.*'rescue-flow sim init'"):
        host.vmutils.list_instances()


@pytest.mark.parametrize("text", ["[]", "null", '"host"'])
def test_a_snapshot_that_is_json_but_no_host_gives_a_clear_error(host, text):
    Path(host.state_file).write_text(text)
    with pytest.raises(store.StateFileCorrupt, match=r"holds a JSON .*, not a host"):
        host.vmutils.list_instances()


def test_a_line_in_the_middle_of_the_journal_that_is_no_change_is_an_error(host):
    """Not a silent stop there: every later change (a VM added) would vanish."""
    journal = Path(_journal(host))
    lines = journal.read_text().splitlines(keepends=True)
    assert any('"vm2"' in line for line in lines[2:])
    journal.write_text("".join([*lines[:2], "not json\n", *lines[2:]]))
    store._registry.pop(os.path.realpath(host.state_file)).forget()  # a new process

    with pytest.raises(store.StateFileCorrupt) as raised:
        host.vmutils.list_instances()

    assert str(raised.value).startswith(f"simulated host journal {journal}: line 3 is "
                                        "not a JSON change")
    # Nor does a retry show the half it read before the bad line.
    with pytest.raises(store.StateFileCorrupt):
        host.vmutils.list_instances()


def test_a_bad_line_appended_by_another_process_is_an_error_too(host):
    assert sorted(host.vmutils.list_instances()) == ["vm1", "vm2"]  # cached
    lines = len(Path(_journal(host)).read_text().splitlines())
    with open(_journal(host), "a") as f:
        f.write("not json\n")
        f.write(json.dumps({"del": {"vms": ["vm2"]}}) + "\n")

    with pytest.raises(store.StateFileCorrupt, match=f"line {lines + 1} is not a JSON"):
        host.vmutils.list_instances()


def test_a_call_that_fails_half_way_leaves_files_and_memory_unchanged(host):
    before = host.view_json()
    on_disk = Path(host.state_file).read_text(), Path(_journal(host)).read_text()

    def half_apply(state: HostState, args: dict) -> None:
        state.data["vms"]["vm1"]["memory_mb"] = 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        host.vmutils._engine.invoke("update_vm", {}, half_apply, mutates=True)
    assert host.view_json() == before
    assert (Path(host.state_file).read_text(), Path(_journal(host)).read_text()) == on_disk


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


def test_an_entry_handed_out_through_the_state_is_journaled(host):
    def through_the_state(state: HostState, args: dict) -> None:
        state.vm("vm2")["memory_mb"] = 2048

    records = len(_records(host))
    host.vmutils._engine.invoke("update_vm", {}, through_the_state, mutates=True)
    assert [r["set"]["vms"]["vm2"]["memory_mb"] for r in _records(host)[records:]] == [2048]


def test_a_slow_call_queues_for_the_lock_once(host, monkeypatch):
    host.set_latency("get_vm_state", 0.01)
    host.vmutils.get_vm_state("vm1")  # cached now
    taken: list[int] = []
    real = store.FileLock.held
    monkeypatch.setattr(store.FileLock, "held", lambda self: taken.append(1) or real(self))
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
