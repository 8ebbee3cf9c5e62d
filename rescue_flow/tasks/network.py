"""The rescue VM takes the instance's network identity."""

from __future__ import annotations

from typing import Any

from rescue_flow import layout, records
from rescue_flow.tasks.base import HostTask, config


def rescue_nics(original: dict[str, Any]) -> list[records.Nic]:
    """NICs with the instance's MACs on the same switches.

    NIC names are host-wide in Hyper-V (os-win finds a NIC by name alone), so
    the copies get their own names; the MACs are what the guest's addresses
    follow. The instance is off while they exist, so no MAC is live twice.
    """
    return [records.Nic(layout.rescue_nic_name(nic.name), nic.mac, nic.switch)
            for nic in config(original).nics]


class CopyNetworkIdentity(HostTask):
    """Give the rescue VM NICs with the instance's MACs and switches; revert removes them."""

    def execute(self, rescue_vm: str, original: dict[str, Any]) -> None:
        for nic in rescue_nics(original):
            self.host.add_nic(rescue_vm, nic)

    def revert(self, rescue_vm: str, original: dict[str, Any], **kwargs: Any) -> None:
        for nic in rescue_nics(original):
            self.host.remove_nic(rescue_vm, nic.name)
