"""The WMI cost profile: calls cost what the profile says, host-wide ones per VM."""

from __future__ import annotations

import json

import pytest

from rescue_flow.simhost import SimulatedHost, costs, engine, oserrors

UUIDS = [f"11111111-2222-4333-8444-{n:012d}" for n in range(1, 6)]


@pytest.fixture
def host(tmp_path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), r"C:\OpenStack\Instances")
    host.add_image("img", 2, "vhdx")
    for n, uuid in enumerate(UUIDS[:2]):
        host.add_vm(f"vm{n}", uuid, "img")
    return host


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    record: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", record.append)
    return record


def test_without_a_profile_calls_cost_nothing(host, slept):
    host.vmutils.list_instance_notes()
    host.vmutils.get_vm_state("vm0")
    assert slept == []


def test_the_default_profile_prices_every_method_the_host_offers():
    profile = costs.load("wmi")
    assert set(profile["methods"]) == set(oserrors.METHODS)
    assert profile["methods"]["set_vm_state"][0] > profile["methods"]["get_vm_state"][0]


def test_a_host_wide_query_costs_in_proportion_to_the_vms(host, slept):
    host.set_cost_profile("wmi")
    base, per_vm = host.cost_profile()["methods"]["list_instance_notes"]
    assert per_vm > 0
    host.vmutils.list_instance_notes()
    for n, uuid in enumerate(UUIDS[2:], start=2):
        host.add_vm(f"vm{n}", uuid, "img")
    host.vmutils.list_instance_notes()
    assert slept == [pytest.approx(base + 2 * per_vm), pytest.approx(base + 5 * per_vm)]


def test_a_per_method_latency_overrides_the_profile_and_scale_multiplies(host, slept):
    host.set_cost_profile("wmi", scale=0.5)
    base, per_vm = costs.load("wmi")["methods"]["set_vm_state"]
    host.vmutils.set_vm_state("vm0", 2)
    host.set_latency("set_vm_state", 0.01)
    host.vmutils.set_vm_state("vm0", 2)
    host.set_latency("set_vm_state", 0)  # back to the profile
    host.vmutils.set_vm_state("vm0", 2)
    assert slept == [pytest.approx((base + 2 * per_vm) / 2), 0.01,
                     pytest.approx((base + 2 * per_vm) / 2)]


def test_a_profile_file_may_price_a_family_and_override_one_method(host, slept, tmp_path):
    path = tmp_path / "p.json"
    families = {name: {"base": 0.001} for name in
                {oserrors.family(m) for m in oserrors.METHODS}}
    path.write_text(json.dumps({"name": "mine", "families": families,
                                "methods": {"get_vm_state": {"base": 0.5}}}))
    host.set_cost_profile(str(path))
    host.vmutils.get_vm_state("vm0")
    host.vmutils.get_vm_generation("vm0")
    assert slept == [0.5, 0.001]
    assert "cost profile: mine x 1" in host.view_text()


def test_a_bad_profile_is_refused(host, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"methods": {"no_such_call": {"base": 1}}}))
    with pytest.raises(ValueError, match="no_such_call"):
        host.set_cost_profile(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        host.set_cost_profile(str(tmp_path / "missing.json"))
    host.set_cost_profile(None)
    assert host.cost_profile() is None
