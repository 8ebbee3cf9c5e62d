"""Where things live on a host: Nova's Hyper-V layout plus the rescue additions.

Nova's Hyper-V driver keeps an instance's disks in
``<instances_path>/<instance name>/`` and cached images in
``<instances_path>/_base/<image id>.vhd(x)``; its rescue used
``root-rescue.vhd(x)`` beside the root disk. Every path built here is checked
to stay inside ``instances_path``, so a crafted id or VM name cannot make the
worker create or delete files elsewhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rescue_flow import exceptions, records
from rescue_flow.hyperv.reader import path_module

RESCUE_VM_SUFFIX = "-rescue"
RESCUE_NIC_SUFFIX = "-rescue"
RESCUE_DISK_STEM = "root-rescue"
IMAGE_CACHE_DIR = "_base"
# compute-hyperv's name for the rescue config drive (pathutils.get_configdrive_path
# with rescue=True): an ISO attached as a DVD, or the VHD qemu-img made of it.
RESCUE_CONFIG_DRIVE_STEM = "configdrive-rescue"
CONFIG_DRIVE_EXTENSIONS = (".iso", ".vhd")
DISK_EXTENSIONS = (".vhdx", ".vhd")


def rescue_vm_slots(generation: int) -> dict[str, records.DiskAttachment]:
    """Where each drive goes on the rescue VM, which the flow builds empty,
    so no slot is looked up: the rescue disk boots from IDE 0:0 (Gen1) or
    SCSI 0:0 (Gen2), the root disk is the next SCSI disk, and the config
    drive sits where compute-hyperv puts it (IDE 1:0 on Gen1, the next SCSI
    slot on Gen2). Paths are left empty; a task fills in its file."""
    if generation == records.GEN1:
        return {"rescue_disk": records.DiskAttachment("", records.CTRL_IDE, 0, 0),
                "root_disk": records.DiskAttachment("", records.CTRL_SCSI, 0, 0),
                "config_drive": records.DiskAttachment("", records.CTRL_IDE, 1, 0)}
    return {"rescue_disk": records.DiskAttachment("", records.CTRL_SCSI, 0, 0),
            "root_disk": records.DiskAttachment("", records.CTRL_SCSI, 0, 1),
            "config_drive": records.DiskAttachment("", records.CTRL_SCSI, 0, 2)}


def rescue_vm_drive(generation: int, role: str, path: str,
                    drive_type: str = records.DRIVE_DISK) -> records.DiskAttachment:
    """The rescue VM's drive for ``role`` (see rescue_vm_slots) holding ``path``."""
    return dataclasses.replace(rescue_vm_slots(generation)[role], path=path,
                               drive_type=drive_type)


def ensure_inside(instances_path: str, path: str, what: str) -> str:
    """Return ``path`` normalized, or refuse it when it leaves ``instances_path``."""
    paths: Any = path_module(instances_path)
    base = paths.normcase(paths.normpath(instances_path))
    candidate = paths.normpath(path)
    folded = paths.normcase(candidate)
    if folded == base or not folded.startswith(base.rstrip(paths.sep) + paths.sep):
        raise exceptions.PathEscapesInstancesDir(
            f"{what} {path!r} would leave the instances folder {instances_path!r}")
    return candidate


def cached_image_candidates(instances_path: str, image_id: str,
                            generation: int = records.GEN2) -> list[str]:
    """The paths the image cache may hold ``image_id`` at, the likelier first
    (each look is a query on Windows): VHDX for Gen2, which boots nothing
    else, VHD for Gen1, whose images mostly are."""
    paths: Any = path_module(instances_path)
    extensions = DISK_EXTENSIONS if generation == records.GEN2 else DISK_EXTENSIONS[::-1]
    return [ensure_inside(instances_path,
                          paths.join(instances_path, IMAGE_CACHE_DIR, image_id + ext),
                          "rescue image")
            for ext in extensions]


def rescue_disk_path(instances_path: str, instance_dir: str, image_format: str) -> str:
    paths: Any = path_module(instances_path)
    extension = ".vhdx" if image_format.upper() == "VHDX" else ".vhd"
    return ensure_inside(instances_path,
                         paths.join(instance_dir, RESCUE_DISK_STEM + extension),
                         "rescue disk")


def rescue_disk_candidates(instances_path: str, instance_dir: str) -> list[str]:
    return [rescue_disk_path(instances_path, instance_dir, fmt) for fmt in ("VHDX", "VHD")]


def rescue_vm_name(instance_vm: str) -> str:
    return instance_vm + RESCUE_VM_SUFFIX


def rescue_nic_name(nic_name: str) -> str:
    return nic_name + RESCUE_NIC_SUFFIX


def rescue_config_drive_candidates(instances_path: str, instance_dir: str) -> list[str]:
    """Where a rescue config drive of this instance may be, ISO first."""
    paths: Any = path_module(instances_path)
    return [ensure_inside(instances_path,
                          paths.join(instance_dir, RESCUE_CONFIG_DRIVE_STEM + ext),
                          "rescue config drive")
            for ext in CONFIG_DRIVE_EXTENSIONS]


def rescue_config_drive(instances_path: str, instance_dir: str, path: str,
                        fmt: str) -> tuple[str, str]:
    """The request's config drive as (path, drive type), or InvalidRequest.

    Only the instance's own ``configdrive-rescue.iso|vhd`` is accepted: the
    worker deletes this file when the rescue reverts or the unrescue ends,
    so a request naming any other file (a root disk, another instance's)
    must not get that far.
    """
    paths: Any = path_module(instances_path)
    candidate = ensure_inside(instances_path, path, "rescue config drive")
    folder = paths.normcase(paths.dirname(candidate))
    name = paths.basename(candidate).lower()
    ext = paths.splitext(name)[1]
    if folder != paths.normcase(paths.normpath(instance_dir)) or \
            name != RESCUE_CONFIG_DRIVE_STEM + ext or ext not in CONFIG_DRIVE_EXTENSIONS:
        raise exceptions.InvalidRequest(
            f"rescue config drive {path!r} is not the instance's "
            f"{RESCUE_CONFIG_DRIVE_STEM}.iso or .vhd in {instance_dir!r}")
    if fmt == "vfat" and ext == ".iso":
        raise exceptions.InvalidRequest(
            f"rescue config drive {path!r}: a vfat drive cannot be an ISO (a DVD)")
    return candidate, records.drive_type_of(candidate)
