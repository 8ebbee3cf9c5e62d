"""The temporary rescue VM: created beside the instance, booting the rescue disk."""

from __future__ import annotations

from typing import Any

from rescue_flow import layout, records
from rescue_flow.hyperv.reader import rescue_vm_notes
from rescue_flow.tasks.base import HostTask, config


class CreateRescueDisk(HostTask):
    """Create root-rescue.vhd(x), a differencing disk on the cached image; revert deletes it."""

    default_provides = "rescue_disk"

    def _path(self, original: dict[str, Any], image_format: str) -> str:
        return layout.rescue_disk_path(self.host.instances_path,
                                       config(original).instance_dir, image_format)

    def execute(self, original: dict[str, Any], image_path: str,
                image_format: str) -> str:
        path = self._path(original, image_format)
        self.host.create_differencing_disk(path, image_path)
        return path

    def revert(self, original: dict[str, Any], image_format: str,
               **kwargs: Any) -> None:
        # Validation refused a rescue when this file already existed, so a
        # file here now is ours to delete.
        self.host.delete_file(self._path(original, image_format))


class CreateRescueVM(HostTask):
    """Create <vm>-rescue with the instance's generation, memory and vCPUs; revert destroys it.

    Its notes carry the instance's recorded configuration, so the host alone
    tells an unrescue (or an operator) what to restore.
    """

    default_provides = "rescue_vm"

    def execute(self, original: dict[str, Any], instance_uuid: str, request_id: str,
                image_os_secure_boot: str | None = None,
                image_os_type: str | None = None) -> str:
        record = config(original)
        name = layout.rescue_vm_name(record.name)
        self.host.create_vm(name, record.generation, record.memory_mb, record.vcpus,
                            record.instance_dir,
                            rescue_vm_notes(instance_uuid, record, request_id))
        secure_boot = records.SecureBoot.from_request(image_os_secure_boot, image_os_type)
        if secure_boot is not None and secure_boot.required:
            # Before anything boots it, as compute-hyperv does at spawn.
            self.host.enable_secure_boot(name, secure_boot.msft_ca_required)
        return name

    def revert(self, original: dict[str, Any], **kwargs: Any) -> None:
        # Destroying a VM leaves its disk files; CreateRescueDisk's revert
        # deletes the rescue disk, and the root disk was moved back already.
        self.host.destroy_vm(layout.rescue_vm_name(config(original).name))


class AttachRescueDisk(HostTask):
    """Put the rescue disk in the boot slot and boot from it; revert detaches it.

    Gen1 boots from IDE 0:0 (hard disk first); Gen2 from SCSI 0:0, with the
    boot order set explicitly, so the VM does not try the network first.
    Provides the rescue VM's SCSI controller when it used it (Gen2), so the
    next attaches to it do not look it up again.
    """

    default_provides = "rescue_scsi_controller"

    def execute(self, rescue_vm: str, rescue_disk: str,
                original: dict[str, Any]) -> str | None:
        generation = config(original).generation
        drive = layout.rescue_vm_drive(generation, "rescue_disk", rescue_disk)
        controller = self.host.attach_disk(rescue_vm, drive)
        self.host.boot_from_disk(rescue_vm, generation, rescue_disk)
        return controller if drive.controller_type == records.CTRL_SCSI else None

    def revert(self, original: dict[str, Any], rescue_disk: str, **kwargs: Any) -> None:
        rescue_vm = layout.rescue_vm_name(config(original).name)
        if self.host.vm_exists(rescue_vm):
            self.host.detach_disk(rescue_vm, rescue_disk)
