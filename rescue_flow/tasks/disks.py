"""Moving the instance's root disk between the instance and the rescue VM."""

from __future__ import annotations

from typing import Any

from rescue_flow import layout, records
from rescue_flow.tasks.base import HostTask, config


def restore_root_on_instance(task: HostTask, instance_vm: str,
                              original: dict[str, Any]) -> None:
    record = config(original)
    task.host.attach_disk(instance_vm, record.root_disk)
    # Re-attaching puts a Gen2 disk last in the boot order: restore it.
    task.host.set_boot_order(instance_vm, record.generation, record.boot_order)


class DetachRootDisk(HostTask):
    """Detach the root disk from the instance; revert re-attaches it at its recorded slot."""

    def execute(self, instance_vm: str, original: dict[str, Any]) -> None:
        # Validation found it on the instance; a resumed step finds it there
        # or nowhere (the next step attaches it elsewhere): no look first.
        self.host.detach_held_disk(instance_vm, config(original).root_disk.path)

    def revert(self, instance_vm: str, original: dict[str, Any], **kwargs: Any) -> None:
        restore_root_on_instance(self, instance_vm, original)


class AttachRootDiskToRescueVM(HostTask):
    """Attach the root disk to the rescue VM as a secondary SCSI disk; revert detaches it."""

    def execute(self, rescue_vm: str, original: dict[str, Any],
                rescue_scsi_controller: str | None = None) -> None:
        # ``rescue_scsi_controller``: None on Gen1, or from a flow recorded
        # by a worker that did not provide it; then it is looked up.
        record = config(original)
        self.host.attach_disk(
            rescue_vm, layout.rescue_vm_drive(record.generation, "root_disk",
                                              record.root_disk.path),
            controller=rescue_scsi_controller)

    def revert(self, rescue_vm: str, original: dict[str, Any], **kwargs: Any) -> None:
        if self.host.vm_exists(rescue_vm):
            self.host.detach_disk(rescue_vm, config(original).root_disk.path)


class DetachRootDiskFromRescueVM(HostTask):
    """Detach the root disk from the rescue VM; revert puts it back in the same slot."""

    def execute(self, rescue_vm: str, original: dict[str, Any]) -> None:
        # Validation found it on the rescue VM; a resumed step finds it there
        # or nowhere (the next step attaches it elsewhere): no look first.
        self.host.detach_held_disk(rescue_vm, config(original).root_disk.path)

    def revert(self, rescue_vm: str, rescue_root_disk: dict[str, Any],
               original: dict[str, Any], rescue_disk: str | None, **kwargs: Any) -> None:
        root = records.DiskAttachment(**rescue_root_disk)
        self.host.attach_disk(rescue_vm, root)
        if rescue_disk is not None and config(original).generation == records.GEN2:
            # Re-attaching put the root disk last; the rescue VM had it right
            # after the rescue disk, ahead of the network.
            self.host.set_boot_order(rescue_vm, records.GEN2, (rescue_disk, root.path))


class AttachRootDiskToInstance(HostTask):
    """Re-attach the root disk to the instance at its recorded slot; revert detaches it."""

    def execute(self, instance_vm: str, original: dict[str, Any]) -> None:
        restore_root_on_instance(self, instance_vm, original)

    def revert(self, instance_vm: str, original: dict[str, Any], **kwargs: Any) -> None:
        self.host.detach_disk(instance_vm, config(original).root_disk.path)
