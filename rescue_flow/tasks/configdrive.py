"""The rescue config drive: Nova's rescue password, for the rescue system.

The Nova driver builds it in nova-compute with Nova's own builder (the
password never leaves nova-compute except inside this file) and names it in
the request. The flow attaches it to the rescue VM where compute-hyperv
attaches a config drive, and removes it with the rest of the rescue: on a
revert, and at the end of an unrescue (cleanup.DeleteRescueConfigDrive). A
request without one (a manual request, a notification) runs these steps as
no-ops.
"""

from __future__ import annotations

from typing import Any

from taskflow.types.failure import Failure

from rescue_flow import layout, records
from rescue_flow.tasks.base import HostTask, config


class CheckRescueConfigDrive(HostTask):
    """Accept only the instance's own configdrive-rescue file; revert deletes it.

    From here on the file is the flow's: a rescue that reverts leaves no
    file holding a password behind. A refusal here deletes nothing (the
    path was not the instance's) and nothing on the host has changed yet.
    """

    default_provides = "rescue_config_drive"

    def execute(self, original: dict[str, Any],
                config_drive: dict[str, str] | None = None) -> dict[str, str] | None:
        if config_drive is None:
            return None
        path, drive_type = layout.rescue_config_drive(
            self.host.instances_path, config(original).instance_dir,
            config_drive["path"], config_drive["format"])
        return {"path": path, "drive_type": drive_type}

    def revert(self, result: Any, **kwargs: Any) -> None:
        if isinstance(result, Failure) or result is None:
            return
        # Runs after the later steps' reverts: the rescue VM that held the
        # file is gone, so Windows lets it be deleted.
        self.host.delete_file(result["path"])


class AttachRescueConfigDrive(HostTask):
    """Attach the config drive to the rescue VM as compute-hyperv does; revert detaches it.

    Gen1: IDE 1:0 (``attach_config_drive``: controller 1, slot 0); Gen2: the
    next SCSI slot, after the rescue and root disks. An ISO goes in as a
    DVD, a VHD as a disk.
    """

    def execute(self, rescue_vm: str, original: dict[str, Any],
                rescue_config_drive: dict[str, str] | None,
                rescue_scsi_controller: str | None = None) -> None:
        if rescue_config_drive is None:
            return
        drive = layout.rescue_vm_drive(config(original).generation, "config_drive",
                                       rescue_config_drive["path"],
                                       rescue_config_drive["drive_type"])
        controller = rescue_scsi_controller if drive.controller_type == records.CTRL_SCSI \
            else None
        self.host.attach_disk(rescue_vm, drive, controller=controller)

    def revert(self, rescue_vm: str, rescue_config_drive: dict[str, str] | None,
               **kwargs: Any) -> None:
        if rescue_config_drive is not None and self.host.vm_exists(rescue_vm):
            self.host.detach_disk(rescue_vm, rescue_config_drive["path"])
