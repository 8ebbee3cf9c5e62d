"""First tasks of each flow: check the request against the host, record the plan."""

from __future__ import annotations

import dataclasses
from typing import Any

from rescue_flow import exceptions, layout, records
from rescue_flow.tasks import observe
from rescue_flow.tasks.base import HostTask, config
from rescue_flow.tasks.validation import validate_rescue


class ValidateRescue(HostTask):
    """Refuse a rescue the host cannot do; nothing to revert."""

    default_provides = ("instance_vm", "image_path", "image_format", "checked_config")

    def execute(self, instance_uuid: str, image_id: str | None,
                image_generation: int | None, image_os_secure_boot: str | None = None,
                image_os_type: str | None = None,
                observed: dict[str, Any] | None = None
                ) -> tuple[str, str, str, dict[str, Any]]:
        # ``observed``: what the runner read to decide (runner.py); a flow
        # recorded without it (an older worker's) reads the host itself.
        plan = validate_rescue(
            self.host, instance_uuid, image_id, image_generation,
            records.SecureBoot.from_request(image_os_secure_boot, image_os_type),
            observed)
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
                        "rescue_vm_power", "rescue_root_disk", "rescue_config_drive_path")

    def execute(self, instance_uuid: str,
                observed: dict[str, Any] | None = None) -> tuple[Any, ...]:
        # ``observed``: what the runner read to decide (runner.py), with the
        # one host-wide query of the unrescue; a flow recorded without it (an
        # older worker's) looks at the host itself.
        if observed is None:
            observed = observe.observe(self.host, instance_uuid).for_flow()
        rescue_vm, original = observed["rescue_vm"], observed["original"]
        if rescue_vm is None or original is None:
            raise exceptions.RequestRefused(
                f"instance {instance_uuid} has no rescue VM with a readable record")
        root = config(original).root_disk.path
        on_rescue_vm = {path.lower(): path for path in observed["rescue_vm_disks"]}
        if root.lower() not in on_rescue_vm:
            raise exceptions.RequestRefused(
                f"root disk {root} is not on rescue VM {rescue_vm}")
        # The rescue disk the rescue VM holds, else the one found on disk.
        disk = next(iter(observed["rescue_disk_files"]), None)
        root_on_rescue_vm = self.host.disk_attachment(root, records.DRIVE_DISK)
        # The rescue config drive, if the rescue VM has one (no extra read).
        drive = next((on_rescue_vm[path.lower()] for path in
                      layout.rescue_config_drive_candidates(self.host.instances_path,
                                                            config(original).instance_dir)
                      if path.lower() in on_rescue_vm), None)
        return (observed["instance_vm"], rescue_vm, original, disk,
                self.host.power_state(rescue_vm), dataclasses.asdict(root_on_rescue_vm),
                drive)
