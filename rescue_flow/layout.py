"""Where things live on a host: Nova's Hyper-V layout plus the rescue additions.

Nova's Hyper-V driver keeps an instance's disks in
``<instances_path>/<instance name>/`` and cached images in
``<instances_path>/_base/<image id>.vhd(x)``; its rescue used
``root-rescue.vhd(x)`` beside the root disk. Every path built here is checked
to stay inside ``instances_path``, so a crafted id or VM name cannot make the
worker create or delete files elsewhere.
"""

from __future__ import annotations

from typing import Any

from rescue_flow import exceptions
from rescue_flow.hyperv.reader import path_module

RESCUE_VM_SUFFIX = "-rescue"
RESCUE_NIC_SUFFIX = "-rescue"
RESCUE_DISK_STEM = "root-rescue"
IMAGE_CACHE_DIR = "_base"
DISK_EXTENSIONS = (".vhdx", ".vhd")


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


def cached_image_candidates(instances_path: str, image_id: str) -> list[str]:
    """The paths the image cache may hold ``image_id`` at, VHDX first."""
    paths: Any = path_module(instances_path)
    return [ensure_inside(instances_path,
                          paths.join(instances_path, IMAGE_CACHE_DIR, image_id + ext),
                          "rescue image")
            for ext in DISK_EXTENSIONS]


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
