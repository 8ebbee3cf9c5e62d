"""Unrescue's last, irreversible steps: remove the rescue VM and its disk.

They run only once the instance runs again. They have no revert: undoing a
finished unrescue because a clean-up failed would take a working instance
down again. Transient errors are retried by the host adapter; a permanent
one is reported as a leftover instead of failing the flow, and the next
unrescue (or the worker) removes it, since these steps are idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from rescue_flow import exceptions
from rescue_flow.tasks.base import HostTask
from rescue_flow.tasks.disks import restore_root_on_instance

LOG = logging.getLogger(__name__)


class DestroyRescueVM(HostTask):
    """Destroy the rescue VM (its NICs go with it); no revert."""

    default_provides = "rescue_vm_leftover"

    def execute(self, rescue_vm: str | None) -> str | None:
        if rescue_vm is None:
            return None
        try:
            self.host.destroy_vm(rescue_vm)
        except exceptions.HyperVError as exc:
            LOG.error("Could not destroy rescue VM %s, left for a later unrescue: %s",
                      rescue_vm, exc)
            return f"VM {rescue_vm}: {exc}"
        return None


class DeleteRescueDisk(HostTask):
    """Delete the rescue disk once no VM uses it; no revert."""

    default_provides = "rescue_disk_leftover"

    def execute(self, rescue_disk: str | None, rescue_vm: str | None) -> str | None:
        if rescue_disk is None:
            return None
        if rescue_vm is not None and self.host.vm_exists(rescue_vm):
            return f"file {rescue_disk}: still used by {rescue_vm}"
        try:
            self.host.delete_file(rescue_disk)
        except exceptions.HyperVError as exc:
            LOG.error("Could not delete rescue disk %s, left for a later unrescue: %s",
                      rescue_disk, exc)
            return f"file {rescue_disk}: {exc}"
        return None



class EnsureRootDiskOnInstance(HostTask):
    """Put the root disk back on the instance when an interrupted run left it off; no revert."""

    def execute(self, instance_vm: str, original: dict[str, Any] | None) -> None:
        if original is not None:
            restore_root_on_instance(self, instance_vm, original)
