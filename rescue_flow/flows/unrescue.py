"""Unrescue: give the root disk back to the instance and remove the rescue VM.

Every step before the instance runs again reverts, so a failure there leaves
the instance rescued and working. Only then come the irreversible clean-up
steps (the rescue VM, its disk, its config drive), which are idempotent
and report what they could not remove.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.tasks import cleanup, disks, power, validate

UNRESCUE_FLOW_NAME = "unrescue-instance"
CLEANUP_FLOW_NAME = "remove-rescue-leftovers"


def get_unrescue_flow(host: HyperVHost) -> linear_flow.Flow:
    """Requires instance_uuid, request_id."""
    return linear_flow.Flow(UNRESCUE_FLOW_NAME).add(
        validate.ValidateUnrescue(host),
        power.StopRescueVM(host),
        disks.DetachRootDiskFromRescueVM(host),
        disks.AttachRootDiskToInstance(host),
        power.StartInstance(host),
        cleanup.DestroyRescueVM(host),
        cleanup.DeleteRescueDisk(host),
        cleanup.DeleteRescueConfigDrive(host),
    )


def get_cleanup_flow(host: HyperVHost) -> linear_flow.Flow:
    """Requires instance_vm, original (or None), rescue_vm and rescue_disk (or None)."""
    return linear_flow.Flow(CLEANUP_FLOW_NAME).add(
        cleanup.EnsureRootDiskOnInstance(host),
        cleanup.DestroyRescueVM(host),
        cleanup.DeleteRescueDisk(host),
        cleanup.DeleteLeftoverRescueConfigDrive(host),
    )
