"""The checks a rescue must pass before it touches the host.

Each failure is its own exception class with a message an operator can act
on. They run inside the flow's first task, so a refused request is recorded
like any other, and again nothing on the host has changed when they fail.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rescue_flow import exceptions, layout, records
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.hyperv.reader import Notes
from rescue_flow.requests import canonical_uuid
from rescue_flow.tasks import observe


@dataclasses.dataclass(frozen=True)
class RescuePlan:
    """What a validated rescue will use, and the configuration it checked."""

    instance_vm: str
    image_path: str
    image_format: str
    config: records.VMConfig


def validate_rescue(host: HyperVHost, instance_uuid: str, image_id: str | None,
                    image_generation: int | None,
                    secure_boot: records.SecureBoot | None = None,
                    observed: dict[str, Any] | None = None) -> RescuePlan:
    """``observed``: the runner's look at the host a moment ago
    (``Observation.for_flow``), which found the instance active: its VM, its
    storage and no rescue VM or rescue disk, so none of that is read again."""
    if observed is not None and observed["state"] == observe.ACTIVE:
        instance_vm = observed["instance_vm"]
        notes: Notes = [(instance_vm, [instance_uuid])]  # no rescue VM among them
        storage = observed["instance_storage"]
    else:
        notes = host.notes_by_vm()  # the one host-wide query of the rescue
        found = host.find_instance_vm(instance_uuid, notes)
        if found is None:
            raise exceptions.InstanceNotFound(
                f"no VM on this host carries instance {instance_uuid} in its notes")
        instance_vm, storage = found, None
    config = host.read_vm_config(instance_vm, notes, storage)
    _check_root_disk(config)
    layout.ensure_inside(host.instances_path, config.instance_dir, "instance folder")
    if config.power_state not in (records.POWER_RUNNING, records.POWER_OFF):
        raise exceptions.RequestRefused(
            f"instance {instance_uuid} is {config.power_state}; Nova rescues only "
            "running or stopped instances")
    _check_rescue_vm_name_free(host, instance_uuid, instance_vm, notes)
    if image_id is None:
        image_id = _own_image(host, config)
    image_path = _cached_image(host, image_id, config.generation)
    # os-win's get_vhd_format answers from the extension for .vhd and .vhdx,
    # the only names the cache is searched for: no need to ask it.
    image_format = host.paths.splitext(image_path)[1][1:].upper()
    if config.generation == records.GEN2 and image_format != "VHDX":
        raise exceptions.UnsupportedImageFormat(
            f"rescue image {image_id} is a {image_format}; a Gen2 VM boots only VHDX")
    if image_generation is not None and image_generation != config.generation:
        raise exceptions.GenerationMismatch(
            f"rescue image {image_id} is for Gen{image_generation} VMs; instance "
            f"{instance_uuid} is Gen{config.generation}")
    check_secure_boot(config.generation, secure_boot)
    if storage is not None:
        return RescuePlan(instance_vm, image_path, image_format, config)
    for path in layout.rescue_disk_candidates(host.instances_path, config.instance_dir):
        if host.file_exists(path):
            raise exceptions.RequestRefused(
                f"a rescue disk {path} is left from an earlier rescue; run "
                f"'rescue-flow run unrescue {instance_uuid}' to remove it")
    return RescuePlan(instance_vm, image_path, image_format, config)


def check_secure_boot(generation: int, secure_boot: records.SecureBoot | None) -> None:
    """Refuse what compute-hyperv refuses: Secure Boot on Gen1, or without os_type."""
    if secure_boot is None or not secure_boot.required:
        return
    if generation != records.GEN2:
        raise exceptions.SecureBootUnavailable(
            "the rescue image requires Secure Boot (os_secure_boot=required), which "
            "needs a generation 2 VM; this instance is Gen1")
    if not secure_boot.os_type:
        raise exceptions.SecureBootUnavailable(
            "the rescue image requires Secure Boot but has no os_type property, "
            "which decides the certificate template (windows or linux)")


def _check_root_disk(config: records.VMConfig) -> None:
    chains = [d.path for d in config.disks if records.is_checkpoint_disk_path(d.path)]
    if chains:
        raise exceptions.InstanceHasCheckpoints(
            f"instance {config.instance_uuid} has checkpoints: it runs on {chains[0]}, "
            "a differencing chain whose parent (the root disk) no other VM may open; "
            "delete its checkpoints, then rescue it")
    volumes = [d for d in config.disks if d.drive_type == records.DRIVE_VOLUME]
    try:
        config.root_disk  # noqa: B018 - raises LookupError when absent
    except LookupError:
        if volumes:
            raise exceptions.BootFromVolumeNotSupported(
                f"instance {config.instance_uuid} boots from a volume; rescue needs "
                "a local root.vhd or root.vhdx") from None
        raise exceptions.RequestRefused(
            f"instance {config.instance_uuid} has no local root disk "
            "(root.vhd or root.vhdx)") from None


def _check_rescue_vm_name_free(host: HyperVHost, instance_uuid: str,
                               instance_vm: str, notes: Notes) -> None:
    name = layout.rescue_vm_name(instance_vm)
    ours = host.find_rescue_vm(instance_uuid, notes)
    if host.vm_exists(name) and (ours is None or ours.name != name):
        raise exceptions.RequestRefused(
            f"a VM named {name} exists and is not this instance's rescue VM")


def _cached_image(host: HyperVHost, image_id: str, generation: int) -> str:
    candidates = layout.cached_image_candidates(host.instances_path, image_id, generation)
    for path in candidates:
        if host.file_exists(path):
            return path
    raise exceptions.RescueImageNotCached(
        f"rescue image {image_id} is not in this host's image cache "
        f"(looked for {' and '.join(candidates)}); boot any instance from it once, "
        "or copy it there")


def _own_image(host: HyperVHost, config: records.VMConfig) -> str:
    """The image the instance booted from: its root disk's parent in the cache."""
    parent = host.disk_parent(config.root_disk.path)
    cache = host.paths.join(host.instances_path, layout.IMAGE_CACHE_DIR)
    if parent and host.paths.normcase(host.paths.dirname(parent)) == \
            host.paths.normcase(cache):
        stem = host.paths.splitext(host.paths.basename(parent))[0]
        try:
            return canonical_uuid(stem, "image id")
        except exceptions.InvalidIdentifier:
            pass
    raise exceptions.RescueImageNotCached(
        f"no rescue image was given and the root disk of instance "
        f"{config.instance_uuid} is not based on a cached image; pass --image")
