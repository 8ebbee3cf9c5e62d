"""The state file is written atomically, only when it changes, and re-read
only when someone else changed it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost, store
from rescue_flow.simhost.model import HostState
from rescue_flow.simhost.oswin import constants

UUID1 = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), "/sim/instances")
    host.add_image("img", 1, "vhdx")
    host.add_vm("vm1", UUID1, "img")
    return host


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def test_read_only_calls_do_not_write_the_state_file(host):
    before = _stamp(host.state_file)
    host.vmutils.get_vm_state("vm1")
    host.vmutils.get_vm_storage_paths("vm1")
    host.view()
    assert _stamp(host.state_file) == before


def test_a_change_that_changes_nothing_does_not_write(host):
    before = _stamp(host.state_file)
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_ENABLED)
    host.vmutils.detach_vm_disk("vm1", "/no/such.vhdx", is_physical=False)
    assert _stamp(host.state_file) == before


def test_a_change_replaces_the_file_and_leaves_no_temp_file(host):
    before = _stamp(host.state_file)
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_DISABLED)
    assert _stamp(host.state_file)[0] != before[0]  # a new file, not an edit
    folder = os.path.dirname(host.state_file)
    assert sorted(os.listdir(folder)) == ["host.json", "host.json.calls",
                                          "host.json.lock"]
    with open(host.state_file) as f:
        data = json.load(f)
    assert data["vms"]["vm1"]["state"] == constants.HYPERV_VM_STATE_DISABLED


def test_an_unchanged_file_is_not_parsed_again(host, monkeypatch):
    parsed = []
    real_loads = store.json.loads
    monkeypatch.setattr(store.json, "loads",
                        lambda text: parsed.append(1) or real_loads(text))
    for _ in range(5):
        host.vmutils.get_vm_state("vm1")
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_DISABLED)
    host.vmutils.get_vm_state("vm1")
    assert parsed == []


def test_a_file_replaced_by_another_process_is_read_again(host):
    with open(host.state_file) as f:
        data = json.load(f)
    data["vms"]["vm1"]["state"] = constants.HYPERV_VM_STATE_DISABLED
    tmp = host.state_file + ".other"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, host.state_file)  # as another process's write would
    assert host.vmutils.get_vm_state("vm1") == constants.HYPERV_VM_STATE_DISABLED


def test_a_corrupt_state_file_gives_a_clear_error(host):
    with open(host.state_file, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        host.vmutils.list_instances()


def test_a_call_that_fails_half_way_leaves_file_and_memory_unchanged(host):
    before = host.view_json()
    on_disk = Path(host.state_file).read_text()

    def half_apply(state: HostState, args: dict) -> None:
        state.data["vms"]["vm1"]["memory_mb"] = 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        host.vmutils._engine.invoke("update_vm", {}, half_apply, mutates=True)
    assert host.view_json() == before
    assert Path(host.state_file).read_text() == on_disk


def test_a_removed_state_file_is_reported_not_silently_recreated(host):
    os.remove(host.state_file)
    with pytest.raises(FileNotFoundError, match="sim init"):
        host.vmutils.list_instances()
    assert not os.path.exists(host.state_file)
