"""First tasks of each flow: check the request against the host, record the plan."""

from __future__ import annotations

import dataclasses
from typing import Any

from rescue_flow import exceptions, layout, records
from rescue_flow.tasks.base import HostTask
from rescue_flow.tasks.validation import validate_rescue


class ValidateRescue(HostTask):
    """Refuse a rescue the host cannot do; nothing to revert."""

    default_provides = ("instance_vm", "image_path", "image_format", "checked_config")

    def execute(self, instance_uuid: str, image_id: str | None,
                image_generation: int | None, image_os_secure_boot: str | None = None,
                image_os_type: str | None = None) -> tuple[str, str, str, dict[str, Any]]:
        plan = validate_rescue(
            self.host, instance_uuid, image_id, image_generation,
            records.SecureBoot.from_request(image_os_secure_boot, image_os_type))
        return (plan.instance_vm, plan.image_path, plan.image_format,
                plan.config.to_dict())


class SnapshotConfig(HostTask):
    """Record the instance's configuration, to restore it and to copy it.

    It is the configuration validation read and checked, a moment ago and
    with nothing changed since: reading it again would cost a dozen WMI
    queries (docs/simulated-host.md, the cost profile) and tell nothing new.
    """

    default_provides = "original"

    def execute(self, checked_config: dict[str, Any]) -> dict[str, Any]:
        return checked_config


class ValidateUnrescue(HostTask):
    """Find the rescue VM and the record in its notes; nothing to revert."""

    default_provides = ("instance_vm", "rescue_vm", "original", "rescue_disk",
                        "rescue_vm_power", "rescue_root_disk")

    def execute(self, instance_uuid: str) -> tuple[Any, ...]:
        notes = self.host.notes_by_vm()  # the one host-wide query of the unrescue
        instance_vm = self.host.find_instance_vm(instance_uuid, notes)
        if instance_vm is None:
            raise exceptions.InstanceNotFound(
                f"no VM on this host carries instance {instance_uuid} in its notes")
        rescue = self.host.find_rescue_vm(instance_uuid, notes)
        if rescue is None or rescue.record is None:
            raise exceptions.RequestRefused(
                f"instance {instance_uuid} has no rescue VM with a readable record")
        record = rescue.record
        root = record.root_disk.path
        attached = {path.lower(): path for path in self.host.vm_disk_paths(rescue.name)}
        if root.lower() not in attached:
            raise exceptions.RequestRefused(
                f"root disk {root} is not on rescue VM {rescue.name}")
        candidates = layout.rescue_disk_candidates(self.host.instances_path,
                                                   record.instance_dir)
        # The rescue VM names its disk; ``exists`` is only asked when it does
        # not, since os-win's exists answers False when Windows fails to look,
        # and a disk missed here would be left behind.
        disk = next((attached[path.lower()] for path in candidates
                     if path.lower() in attached), None) or \
            next((path for path in candidates if self.host.file_exists(path)), None)
        root_on_rescue_vm = self.host.disk_attachment(root, records.DRIVE_DISK)
        return (instance_vm, rescue.name, record.to_dict(), disk,
                self.host.power_state(rescue.name),
                dataclasses.asdict(root_on_rescue_vm))
