"""Tell an instance's rescue state from the host itself.

The host is the source of truth: a worker may have died, history may be
lost, yet the VMs and files on the host still say whether an instance is
rescued. A rescue VM carries the instance's original configuration in its
notes, so an unrescue needs nothing but the host.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    # What was read on the way, kept so that the flow does not read it again:
    # the instance's storage (disk files, passthrough volumes) when there is
    # no rescue VM, the rescue VM's disk files when there is one.
    instance_storage: tuple[list[str], list[str]] | None = None
    rescue_vm_disks: list[str] | None = None

    @property
    def leftovers(self) -> list[str]:
        found = [f"VM {self.rescue_vm.name}"] if self.rescue_vm else []
        return found + [f"file {path}" for path in self.leftover_files]

    def for_flow(self) -> dict[str, Any]:
        """The observation as the flow's first task takes it (``observed``):
        plain values, persisted with the flow like the rest of its store."""
        rescue_vm = self.rescue_vm
        record = rescue_vm.record if rescue_vm else None
        return {"state": self.state, "instance_vm": self.instance_vm,
                "rescue_vm": rescue_vm.name if rescue_vm else None,
                "original": record.to_dict() if record else None,
                "rescue_disk_files": list(self.leftover_files),
                "instance_storage": self.instance_storage,
                "rescue_vm_disks": self.rescue_vm_disks}


def observe(host: HyperVHost, instance_uuid: str) -> Observation:
    """Read the host and classify the instance (no flow in flight is assumed)."""
    notes = host.notes_by_vm()  # one host-wide query for both look-ups
    instance_vm = host.find_instance_vm(instance_uuid, notes)
    if instance_vm is None:
        raise exceptions.InstanceNotFound(
            f"no VM on this host carries instance {instance_uuid} in its notes")
    rescue_vm = host.find_rescue_vm(instance_uuid, notes)
    root = _root_path(rescue_vm) if rescue_vm else None
    if rescue_vm is not None and root is not None:
        record = rescue_vm.record
        assert record is not None  # a root path comes from the record
        disks = host.vm_disk_paths(rescue_vm.name)
        attached = {path.lower(): path for path in disks}
        candidates = layout.rescue_disk_candidates(host.instances_path,
                                                   record.instance_dir)
        # The rescue VM names its disk; ``exists`` is asked only when it does
        # not (os-win's exists answers False when Windows fails to look).
        files = [attached[path.lower()] for path in candidates
                 if path.lower() in attached] or _existing(host, candidates)
        state = RESCUED if root.lower() in attached else LEFTOVERS
        return Observation(state, instance_vm, rescue_vm, files, rescue_vm_disks=disks)
    storage = None
    if rescue_vm is not None and rescue_vm.record is not None:
        instance_dir = rescue_vm.record.instance_dir
    else:
        storage = host.vm_storage(instance_vm)
        instance_dir = _instance_dir(host, instance_vm, storage[0])
    files = _existing(host, layout.rescue_disk_candidates(host.instances_path,
                                                          instance_dir))
    if rescue_vm is None:
        return Observation(LEFTOVERS if files else ACTIVE, instance_vm, None, files,
                           instance_storage=storage)
    return Observation(LEFTOVERS, instance_vm, rescue_vm, files, instance_storage=storage)


def _existing(host: HyperVHost, paths: list[str]) -> list[str]:
    return [path for path in paths if host.file_exists(path)]


def _root_path(rescue_vm: RescueVM) -> str | None:
    if rescue_vm.record is None:
        return None
    try:
        return rescue_vm.record.root_disk.path
    except LookupError:
        return None


def _instance_dir(host: HyperVHost, instance_vm: str, disk_files: list[str]) -> str:
    for path in disk_files:
        if records.is_root_disk_path(path):
            return str(host.paths.dirname(path))
    return str(host.paths.join(host.instances_path, instance_vm))
