"""Tell an instance's rescue state from the host itself.

The host is the source of truth: a worker may have died, history may be
lost, yet the VMs and files on the host still say whether an instance is
rescued. A rescue VM carries the instance's original configuration in its
notes, so an unrescue needs nothing but the host.
"""

from __future__ import annotations

import dataclasses

from rescue_flow import exceptions, layout, records
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.hyperv.reader import RescueVM

ACTIVE = "active"
RESCUED = "rescued"
# A rescue VM without the root disk, or a rescue disk without a rescue VM:
# what an unrescue whose final clean-up failed leaves behind.
LEFTOVERS = "leftovers"


@dataclasses.dataclass
class Observation:
    state: str
    instance_vm: str
    rescue_vm: RescueVM | None
    leftover_files: list[str]

    @property
    def leftovers(self) -> list[str]:
        found = [f"VM {self.rescue_vm.name}"] if self.rescue_vm else []
        return found + [f"file {path}" for path in self.leftover_files]


def observe(host: HyperVHost, instance_uuid: str) -> Observation:
    """Read the host and classify the instance (no flow in flight is assumed)."""
    notes = host.notes_by_vm()  # one host-wide query for both look-ups
    instance_vm = host.find_instance_vm(instance_uuid, notes)
    if instance_vm is None:
        raise exceptions.InstanceNotFound(
            f"no VM on this host carries instance {instance_uuid} in its notes")
    rescue_vm = host.find_rescue_vm(instance_uuid, notes)
    instance_dir = _instance_dir(host, instance_vm, rescue_vm)
    files = [path for path in
             layout.rescue_disk_candidates(host.instances_path, instance_dir)
             if host.file_exists(path)]
    if rescue_vm is None:
        return Observation(LEFTOVERS if files else ACTIVE, instance_vm, None, files)
    root = _root_path(rescue_vm)
    if root and host.disk_attached_to(rescue_vm.name, root):
        return Observation(RESCUED, instance_vm, rescue_vm, files)
    return Observation(LEFTOVERS, instance_vm, rescue_vm, files)


def _root_path(rescue_vm: RescueVM) -> str | None:
    if rescue_vm.record is None:
        return None
    try:
        return rescue_vm.record.root_disk.path
    except LookupError:
        return None


def _instance_dir(host: HyperVHost, instance_vm: str,
                  rescue_vm: RescueVM | None) -> str:
    if rescue_vm is not None and rescue_vm.record is not None:
        return rescue_vm.record.instance_dir
    for path in host.vm_disk_paths(instance_vm):
        if records.is_root_disk_path(path):
            return str(host.paths.dirname(path))
    return str(host.paths.join(host.instances_path, instance_vm))
