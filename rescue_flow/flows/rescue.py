"""Rescue: boot a temporary VM from the rescue image with the instance's root disk.

Reads like the recipe it is. Each step's revert undoes it, in reverse order,
so a failure anywhere leaves the host as it was before the request.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.tasks import configdrive, disks, network, power, validate, vm

RESCUE_FLOW_NAME = "rescue-instance"


def get_rescue_flow(host: HyperVHost) -> linear_flow.Flow:
    """Requires instance_uuid, image_id, image_generation, request_id
    (config_drive optional: the Nova driver's rescue config drive)."""
    return linear_flow.Flow(RESCUE_FLOW_NAME).add(
        validate.ValidateRescue(host),
        validate.SnapshotConfig(host),
        configdrive.CheckRescueConfigDrive(host),
        power.StopInstance(host),
        vm.CreateRescueDisk(host),
        vm.CreateRescueVM(host),
        vm.AttachRescueDisk(host),
        disks.DetachRootDisk(host),
        disks.AttachRootDiskToRescueVM(host),
        configdrive.AttachRescueConfigDrive(host),
        network.CopyNetworkIdentity(host),
        power.StartRescueVM(host),
    )
