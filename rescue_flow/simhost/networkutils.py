"""SimNetworkUtils: os_win.utils.network.networkutils.NetworkUtils, simulated.

A NIC's switch port is named after the NIC (os-win's convention), so a
"port id" here is a NIC name. A NIC is connected to at most one switch.
The os-win parameters carry no type hints: ``inspect.signature`` compares
annotations and os-win has none.
"""

from __future__ import annotations

from typing import Any

from rescue_flow.simhost.engine import SimUtils, oswin_call
from rescue_flow.simhost.model import HostState
from rescue_flow.simhost.oswin import exceptions


def _switch(st: HostState, vswitch_name: Any) -> dict[str, Any]:
    name = st.switch_name(vswitch_name)
    if name is None:
        raise exceptions.HyperVvSwitchNotFound(vswitch_name=vswitch_name)
    return st.data["switches"][name]  # type: ignore[no-any-return]


def _nic(st: HostState, vnic_name: Any) -> dict[str, Any]:
    found = st.find_nic(vnic_name)
    if found is None:
        raise exceptions.HyperVvNicNotFound(vnic_name=vnic_name)
    return found[2]


class SimNetworkUtils(SimUtils):
    """Virtual switches and the NICs' ports on them."""

    @oswin_call(mutates=False)
    def get_vswitch_id(self, st: HostState, vswitch_name):
        return _switch(st, vswitch_name)["id"]

    @oswin_call(mutates=False)
    def vswitch_port_needed(self, st: HostState):
        return False

    @oswin_call(mutates=False)
    def get_vnic_ids(self, st: HostState):
        return {name for vm in st.data["vms"].values() for name in vm["nics"]}

    @oswin_call(mutates=False)
    def get_vnic_mac_address(self, st: HostState, switch_port_name):
        """The MAC as Hyper-V stores it: 12 hex digits, no colons."""
        return _nic(st, switch_port_name)["mac"]

    @oswin_call(mutates=False)
    def get_port_by_id(self, st: HostState, port_id, vswitch_name):
        """A dict describing the port when NIC ``port_id`` is on that switch,
        else None (os-win returns the WMI port object)."""
        switch = _switch(st, vswitch_name)
        found = st.find_nic(port_id)
        if found is None or found[2]["switch"] != st.switch_name(vswitch_name):
            return None
        return {"ElementName": port_id, "SystemName": switch["id"],
                "vm_name": found[0]}

    @oswin_call(mutates=True)
    def connect_vnic_to_vswitch(self, st: HostState, vswitch_name, switch_port_name):
        """Connect the NIC to the switch.

        As in os-win, a NIC whose port is already connected is left alone,
        even when it is connected to another switch.
        """
        found = st.find_nic(switch_port_name)
        if found is not None and found[2]["switch"]:
            return
        _switch(st, vswitch_name)
        _nic(st, switch_port_name)["switch"] = st.switch_name(vswitch_name)

    @oswin_call(mutates=True)
    def remove_switch_port(self, st: HostState, switch_port_name, vnic_deleted=False):
        """Disconnect the NIC's port; with ``vnic_deleted`` only os-win's caches
        are dropped, so the host does not change. A missing port is ignored."""
        found = st.find_nic(switch_port_name)
        if found is None or vnic_deleted:
            return
        found[2]["switch"] = None
