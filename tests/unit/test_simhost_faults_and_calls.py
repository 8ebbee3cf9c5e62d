"""Injected faults, latency and the call log of the simulated host."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescue_flow.simhost import SimulatedHost, engine
from rescue_flow.simhost.oswin import constants, exceptions
from rescue_flow.simhost.store import StateStore

UUID1 = "11111111-2222-4333-8444-555555555555"
OFF = constants.HYPERV_VM_STATE_DISABLED


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), "/sim/instances")
    host.add_image("img", 1, "vhdx")
    host.add_vm("vm1", UUID1, "img")
    return host


def _outcomes(host: SimulatedHost, calls: int) -> list[str]:
    results = []
    for _ in range(calls):
        try:
            host.vmutils.get_vm_state("vm1")
            results.append("ok")
        except (exceptions.HyperVException, exceptions.x_wmi):
            results.append("fail")
    return results


def test_a_permanent_fault_of_a_wmi_job_raises_wmi_job_failed_invalid_parameter(host):
    host.set_fault("set_vm_state", "permanent")
    with pytest.raises(exceptions.WMIJobFailed) as err:
        host.vmutils.set_vm_state("vm1", OFF)
    assert err.value.error_code == 32773
    assert "simulated permanent fault in set_vm_state" in str(err.value)


def test_a_transient_fault_raises_wmi_job_failed_with_hyperv_error_code(host):
    host.set_fault("set_vm_state", "transient")
    with pytest.raises(exceptions.WMIJobFailed) as err:
        host.vmutils.set_vm_state("vm1", OFF)
    assert err.value.error_code == 32768
    assert "simulated transient fault in set_vm_state" in str(err.value)


def test_a_failed_call_has_no_effect(host):
    host.set_fault("set_vm_state", "permanent")
    before = host.view_json()
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.set_vm_state("vm1", OFF)
    assert host.view_json() == before


def test_a_fault_lets_after_calls_pass_fails_times_calls_then_goes_away(host):
    host.set_fault("get_vm_state", "permanent", after=2, times=2)
    assert _outcomes(host, 6) == ["ok", "ok", "fail", "fail", "ok", "ok"]
    assert host.armed_faults()["faults"] == {}


def test_a_fault_without_times_fails_every_later_call(host):
    host.set_fault("get_vm_state", "transient", after=1)
    assert _outcomes(host, 4) == ["ok", "fail", "fail", "fail"]


@settings(max_examples=30, deadline=None)
@given(after=st.integers(0, 4), times=st.one_of(st.none(), st.integers(1, 4)),
       calls=st.integers(0, 9))
def test_fault_counting_follows_after_and_times(tmp_path_factory, after, times, calls):
    folder = tmp_path_factory.mktemp("faults")
    host = SimulatedHost.init(str(folder / "host.json"), "/sim")
    host.vmutils.create_vm("vm1", False, 1, "/sim/vm1")
    host.set_fault("get_vm_state", "permanent", after=after, times=times)
    expected = ["fail" if n > after and (times is None or n <= after + times) else "ok"
                for n in range(1, calls + 1)]
    assert _outcomes(host, calls) == expected


def test_fault_counters_live_in_the_state_file_and_are_shared(host):
    host.set_fault("get_vm_state", "permanent", after=1, times=1)
    other = SimulatedHost(host.state_file)
    assert _outcomes(other, 1) == ["ok"]
    assert _outcomes(host, 2) == ["fail", "ok"]


def test_a_counted_call_is_on_disk_even_when_nothing_else_changed(host):
    host.set_fault("get_vm_state", "permanent", after=3)
    host.vmutils.get_vm_state("vm1")
    on_disk = StateStore(host.state_file).read_from_disk()
    assert on_disk["faults"]["get_vm_state"]["seen"] == 1


def test_a_fault_applies_only_to_the_method_it_names(host):
    host.set_fault("set_vm_state", "permanent")
    assert _outcomes(host, 2) == ["ok", "ok"]


def test_set_fault_refuses_an_unknown_method_or_mode(host):
    with pytest.raises(ValueError, match=r"offers: .*attach_drive"):
        host.set_fault("no_such_method", "permanent")
    with pytest.raises(ValueError, match="mode"):
        host.set_fault("get_vm_state", "sometimes")
    with pytest.raises(ValueError):
        host.set_latency("get_vm_state", -1)


def test_clear_faults_removes_faults_and_latencies(host):
    host.set_fault("get_vm_state", "permanent")
    host.set_latency("list_instances", 2.0)
    host.clear_faults()
    assert host.armed_faults() == {"faults": {}, "latency": {}}
    assert _outcomes(host, 1) == ["ok"]


def test_latency_sleeps_before_each_call_of_that_method_only(host, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", slept.append)
    host.set_latency("get_vm_state", 0.25)
    host.vmutils.get_vm_state("vm1")
    host.vmutils.get_vm_state("vm1")
    host.vmutils.list_instances()
    assert slept == [0.25, 0.25]


def test_every_call_is_logged_with_its_arguments_bound_by_name(host):
    host.clear_calls()
    host.vmutils.set_vm_state("vm1", OFF)
    host.vmutils.detach_vm_disk("vm1", "/x.vhdx")
    assert host.calls() == [
        {"method": "set_vm_state", "args": {"vm_name": "vm1", "req_state": OFF}},
        {"method": "detach_vm_disk", "args": {"vm_name": "vm1", "disk_path": "/x.vhdx",
                                              "is_physical": True, "serial": None}},
    ]


def test_failing_calls_are_logged_too(host):
    host.set_fault("get_vm_state", "permanent")
    with pytest.raises(exceptions.HyperVException):
        host.vmutils.get_vm_state("vm1")
    with pytest.raises(exceptions.HyperVVMNotFoundException):
        host.vmutils.get_vm_generation("nope")
    assert [c["method"] for c in host.calls()] == ["get_vm_state", "get_vm_generation"]


def test_a_call_with_wrong_arguments_raises_type_error_and_is_not_logged(host):
    with pytest.raises(TypeError):
        host.vmutils.set_vm_state("vm1")
    assert host.calls() == []


def test_clear_calls_empties_the_log_for_every_host_object(host):
    host.vmutils.list_instances()
    SimulatedHost(host.state_file).clear_calls()
    assert host.calls() == []


def test_results_are_copies_that_cannot_change_the_host(host):
    paths = host.vmutils.get_vm_storage_paths("vm1")[0]
    paths.append("/injected.vhdx")
    notes = host.vmutils.list_instance_notes()
    notes[0][1].append("x")
    assert host.vmutils.get_vm_storage_paths("vm1")[0] != paths
    assert host.vmutils.list_instance_notes() == [("vm1", [UUID1])]
