"""SimNetworkUtils behaves like os-win's NetworkUtils."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import exceptions


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), str(tmp_path / "instances"),
                              switches=("external", "internal"))
    host.vmutils.create_vm("vm1", False, 1, "/x/vm1")
    host.vmutils.create_nic("vm1", "nic-a", "FA:16:3E:00:00:0A")
    return host


def test_connect_vnic_to_vswitch_puts_the_nics_port_on_the_switch(host):
    assert host.netutils.get_port_by_id("nic-a", "external") is None
    host.netutils.connect_vnic_to_vswitch("external", "nic-a")
    assert host.netutils.get_port_by_id("nic-a", "external")
    assert host.netutils.get_port_by_id("nic-a", "internal") is None
    assert host.view()["vms"]["vm1"]["nics"][0]["switch"] == "external"


def test_connecting_a_connected_nic_again_leaves_it_where_it_is_like_oswin(host):
    host.netutils.connect_vnic_to_vswitch("external", "nic-a")
    host.netutils.connect_vnic_to_vswitch("internal", "nic-a")
    assert host.view()["vms"]["vm1"]["nics"][0]["switch"] == "external"


def test_connect_to_an_unknown_switch_raises_switch_not_found(host):
    with pytest.raises(exceptions.HyperVvSwitchNotFound):
        host.netutils.connect_vnic_to_vswitch("nope", "nic-a")


def test_connect_of_an_unknown_nic_raises_nic_not_found(host):
    with pytest.raises(exceptions.HyperVvNicNotFound):
        host.netutils.connect_vnic_to_vswitch("external", "nope")


def test_get_port_by_id_on_an_unknown_switch_raises_switch_not_found(host):
    with pytest.raises(exceptions.HyperVvSwitchNotFound):
        host.netutils.get_port_by_id("nic-a", "nope")


def test_get_vnic_mac_address_of_an_unknown_nic_raises_nic_not_found(host):
    with pytest.raises(exceptions.HyperVvNicNotFound):
        host.netutils.get_vnic_mac_address("nope")


def test_get_vswitch_id_is_stable_and_unknown_switches_are_not_found(host):
    assert host.netutils.get_vswitch_id("external") == \
        host.netutils.get_vswitch_id("external")
    assert host.netutils.get_vswitch_id("external") != \
        host.netutils.get_vswitch_id("internal")
    with pytest.raises(exceptions.HyperVvSwitchNotFound):
        host.netutils.get_vswitch_id("nope")


def test_get_vnic_ids_lists_every_nic_on_the_host(host):
    host.vmutils.create_vm("vm2", False, 1, "/x/vm2")
    host.vmutils.create_nic("vm2", "nic-b")
    assert host.netutils.get_vnic_ids() == {"nic-a", "nic-b"}
    assert host.netutils.vswitch_port_needed() is False


def test_remove_switch_port_disconnects_unless_the_vnic_is_already_deleted(host):
    host.netutils.connect_vnic_to_vswitch("external", "nic-a")
    host.netutils.remove_switch_port("nic-a", vnic_deleted=True)
    assert host.netutils.get_port_by_id("nic-a", "external")
    host.netutils.remove_switch_port("nic-a")
    assert host.netutils.get_port_by_id("nic-a", "external") is None
    host.netutils.remove_switch_port("no-such-port")  # ignored


def test_a_destroyed_nic_takes_its_port_with_it(host):
    host.netutils.connect_vnic_to_vswitch("external", "nic-a")
    host.vmutils.destroy_nic("vm1", "nic-a")
    assert host.netutils.get_port_by_id("nic-a", "external") is None
    assert host.netutils.get_vnic_ids() == set()
