"""Seeding: put on the host what Nova's Hyper-V driver would have made.

Seeding is a test affordance, not an os-win call: it is not in the call
log, faults do not apply, and bad input is a ``ValueError`` (a mistake in
the test or command line), never an os-win exception. The layout follows
Nova's driver: ``<instances_path>/_base/<image id>.vhd(x)`` for cached
images, ``<instances_path>/<vm name>/root.vhd(x)`` (a differencing disk on
the cached image) and ``configdrive.iso`` for an instance.

Seeded names and MACs are derived from the instance uuid, not random, so
seeding the same configuration twice gives byte-identical views.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from rescue_flow.simhost import disks
from rescue_flow.simhost.model import (
    GIB,
    MAX_NICS,
    HostState,
    is_uuid_like,
)
from rescue_flow.simhost.oswin import constants
from rescue_flow.simhost.vmutils import new_vm_record

IMAGE_CACHE_DIR = "_base"
SOFT_SHUTDOWN_MODES = ("clean", "hang")
# Seeded Secure Boot: off, or on with the template a Windows or Linux guest needs.
SECURE_BOOT_TEMPLATES = {"windows": "MicrosoftWindows",
                         "linux": "MicrosoftUEFICertificateAuthority"}
SECURE_BOOT_CHOICES = (None, *SECURE_BOOT_TEMPLATES)
GEN1_SEEDED_BOOT_ORDER = [constants.BOOT_DEVICE_HARDDISK, constants.BOOT_DEVICE_CDROM,
                          constants.BOOT_DEVICE_NETWORK, constants.BOOT_DEVICE_FLOPPY]
_FORMATS = {"vhd": constants.DISK_FORMAT_VHD, "vhdx": constants.DISK_FORMAT_VHDX}
# Neither may appear in an image id or VM name (both separate on Windows).
_SEPARATORS = ("/", "\\")
# Namespace for the uuid5 names of seeded NICs and volumes.
_SEED_NS = uuid.UUID("6f1d3c52-8a57-4f0e-9a65-3c1b2f7c9e10")


def _disk_format(fmt: str) -> str:
    fmt_key = str(fmt).lower()
    if fmt_key not in _FORMATS:
        raise ValueError(f"image format must be 'vhd' or 'vhdx', not {fmt!r}")
    return _FORMATS[fmt_key]


def add_image(st: HostState, image_id: str, generation: int, fmt: str) -> str:
    if not image_id or any(sep in image_id for sep in _SEPARATORS):
        raise ValueError(f"invalid image id {image_id!r}")
    if generation not in (constants.VM_GEN_1, constants.VM_GEN_2):
        raise ValueError(f"generation must be 1 or 2, not {generation!r}")
    disk_format = _disk_format(fmt)
    if generation == constants.VM_GEN_2 and disk_format == constants.DISK_FORMAT_VHD:
        raise ValueError("a Gen2 VM cannot boot from a VHD image: use vhdx")
    if image_id in st.data["images"]:
        raise ValueError(f"image {image_id!r} is already in the image cache")
    base = st.paths.join(st.data["instances_path"], IMAGE_CACHE_DIR)
    path = st.paths.join(base, f"{image_id}.{disk_format.lower()}")
    if st.exists(path):
        raise ValueError(f"{path} already exists on the simulated host")
    st.add_dir(base)
    st.add_file(path, disk_format, "dynamic", virtual_size=GIB)
    st.data["images"][image_id] = {"generation": generation, "format": disk_format,
                                   "path": path}
    return path


def _check_vm_request(st: HostState, name: str, instance_uuid: str, image_id: str,
                      generation: int | None, nics: int, memory_mb: int, vcpus: int,
                      soft_shutdown: str) -> dict[str, Any]:
    if not name or any(sep in name for sep in _SEPARATORS):
        raise ValueError(f"invalid VM name {name!r}")
    if name in st.data["vms"]:
        raise ValueError(f"a VM named {name!r} already exists")
    if not is_uuid_like(instance_uuid):
        raise ValueError(f"instance uuid {instance_uuid!r} is not a UUID")
    for other, vm in st.data["vms"].items():
        if instance_uuid in (vm["notes"] or []):
            raise ValueError(f"uuid {instance_uuid} is already used by VM {other!r}")
    image = st.data["images"].get(image_id)
    if image is None:
        raise ValueError(f"image {image_id!r} is not in the image cache; add it "
                         f"first (add_image / 'rescue-flow sim add-image')")
    if generation is not None and generation != image["generation"]:
        raise ValueError(f"generation {generation} differs from image {image_id!r}'s "
                         f"generation {image['generation']}")
    if image["generation"] == constants.VM_GEN_2 and \
            image["format"] == constants.DISK_FORMAT_VHD:
        raise ValueError("a Gen2 VM cannot boot from a VHD image")
    if not 0 <= nics <= MAX_NICS:
        raise ValueError(f"nics must be between 0 and {MAX_NICS}, not {nics}")
    if nics and not st.data["switches"]:
        raise ValueError("the host has no virtual switch to connect NICs to")
    if memory_mb < 32 or vcpus < 1:
        raise ValueError("memory_mb must be >= 32 and vcpus >= 1")
    if soft_shutdown not in SOFT_SHUTDOWN_MODES:
        raise ValueError(f"soft_shutdown must be one of {SOFT_SHUTDOWN_MODES}")
    vm_dir = st.paths.join(st.data["instances_path"], name)
    for leftover in ("root.vhd", "root.vhdx", "configdrive.iso"):
        if st.exists(st.paths.join(vm_dir, leftover)):
            raise ValueError(f"{st.paths.join(vm_dir, leftover)} already exists")
    return image


def _add_checkpoints(st: HostState, vm: dict[str, Any], instance_uuid: str, root: str,
                     fmt: str, size: int, count: int) -> str:
    """Hyper-V's checkpoints: each one freezes the disk and continues it in a
    new ``<stem>_<GUID>.avhd(x)`` child; the VM runs on the last of them."""
    disk = root
    stem, ext = st.paths.splitext(root)
    for index in range(count):
        guid = str(uuid.uuid5(_SEED_NS, f"{instance_uuid}/checkpoint/{index}")).upper()
        child = f"{stem}_{guid}.a{ext[1:]}"
        st.add_file(child, fmt, "differencing", parent=disk, virtual_size=size)
        vm["checkpoints"].append(f"checkpoint {index + 1}")
        disk = child
    return disk


def volume_path(instance_uuid: str) -> str:
    """The WMI path of the host disk a boot-from-volume instance boots from."""
    volume_id = uuid.uuid5(_SEED_NS, f"{instance_uuid}/volume")
    return rf'root\virtualization\v2:Msvm_DiskDrive.DeviceID="sim-volume-{volume_id}"'


def add_vm(st: HostState, name: str, instance_uuid: str, image_id: str,
           generation: int | None = None, stopped: bool = False,
           boot_from_volume: bool = False, nics: int = 0, memory_mb: int = 1024,
           vcpus: int = 1, config_drive: bool = False,
           soft_shutdown: str = "clean", checkpoints: int = 0,
           secure_boot: str | None = None) -> None:
    image = _check_vm_request(st, name, instance_uuid, image_id, generation, nics,
                              memory_mb, vcpus, soft_shutdown)
    if secure_boot not in SECURE_BOOT_CHOICES:
        raise ValueError(f"secure_boot must be one of {SECURE_BOOT_CHOICES}")
    if secure_boot and image["generation"] != constants.VM_GEN_2:
        raise ValueError("Secure Boot needs a generation 2 VM")
    if not 0 <= checkpoints <= 50 or (checkpoints and boot_from_volume):
        raise ValueError("checkpoints must be 0..50, on a VM with a root.vhd(x)")
    gen = image["generation"]
    vm_dir = st.paths.join(st.data["instances_path"], name)
    vm = new_vm_record(gen, vm_dir, [instance_uuid])
    vm.update(memory_mb=int(memory_mb), vcpus=int(vcpus), soft_shutdown=soft_shutdown)
    st.data["vms"][name] = vm
    st.add_dir(vm_dir)
    disks.add_controller(vm, constants.CTRL_TYPE_SCSI)

    def ctrl_path(ctrl_type: str, addr: int) -> str:
        ctrl = next(c for c in vm["controllers"]
                    if c["type"] == ctrl_type and c["addr"] == addr)
        return st.controller_path(name, vm, ctrl)

    root_ctrl = ctrl_path(constants.CTRL_TYPE_IDE, 0) if gen == constants.VM_GEN_1 \
        else ctrl_path(constants.CTRL_TYPE_SCSI, 0)
    if boot_from_volume:
        root = volume_path(instance_uuid)
        serial = str(uuid.uuid5(_SEED_NS, f"{instance_uuid}/volume"))
        disks.attach(st, name, root, root_ctrl, 0, disks.PASSTHROUGH, serial=serial)
    else:
        root = st.paths.join(vm_dir, f"root.{image['format'].lower()}")
        base = st.file(image["path"])
        if base is None:
            raise ValueError(f"the image file {image['path']} is gone from the host")
        st.add_file(root, image["format"], "differencing", parent=image["path"],
                    virtual_size=base["virtual_size"])
        root = _add_checkpoints(st, vm, instance_uuid, root, image["format"],
                                base["virtual_size"], checkpoints)
        disks.attach(st, name, root, root_ctrl, 0, disks.DISK)

    switch = next(iter(st.data["switches"]), None)
    for index in range(nics):
        nic_id = str(uuid.uuid5(_SEED_NS, f"{instance_uuid}/nic/{index}"))
        tail = uuid.uuid5(_SEED_NS, f"{instance_uuid}/mac/{index}").hex[:6].upper()
        st.add_nic(vm, nic_id, "FA163E" + tail)["switch"] = switch

    if config_drive:
        iso = st.paths.join(vm_dir, "configdrive.iso")
        st.add_file(iso, constants.DVD_FORMAT, "iso", virtual_size=64 << 20)
        if gen == constants.VM_GEN_1:
            disks.attach(st, name, iso, ctrl_path(constants.CTRL_TYPE_IDE, 1), 0,
                         disks.DVD)
        else:
            disks.attach(st, name, iso, root_ctrl, 1, disks.DVD)

    if gen == constants.VM_GEN_1:
        vm["boot_order"] = list(GEN1_SEEDED_BOOT_ORDER)
    else:
        disks.set_boot_order(st, name, [root])
    if secure_boot:
        vm.update(secure_boot=True, secure_boot_template=SECURE_BOOT_TEMPLATES[secure_boot])
    if not stopped:
        vm["state"] = constants.HYPERV_VM_STATE_ENABLED
        vm["started_at"] = time.time()


# What another program on the host may write (put_file): Nova's config drive
# builder writes an ISO, or a VHD that qemu-img converted from it.
_WRITTEN_FORMATS = {".iso": (constants.DVD_FORMAT, "iso"),
                    ".vhd": (constants.DISK_FORMAT_VHD, "dynamic"),
                    ".vhdx": (constants.DISK_FORMAT_VHDX, "dynamic")}


def put_file(st: HostState, path: str, data: bytes) -> None:
    """Write ``path`` with ``data``, as a program other than os-win would
    (nova-compute writing a config drive): format by extension, content kept.

    Refused, as Windows would refuse the write, when its folder is missing or
    a VM that is not off holds the file open.
    """
    ext = st.paths.splitext(path)[1].lower()
    if ext not in _WRITTEN_FORMATS:
        raise ValueError(f"put_file writes {', '.join(_WRITTEN_FORMATS)} files, not {path}")
    if not st.parent_dir_exists(path):
        raise ValueError(f"the folder of {path} does not exist on the host")
    holder = st.holder_of(path)
    if holder is not None:
        raise ValueError(f"{path} is in use by {holder}")
    fmt, kind = _WRITTEN_FORMATS[ext]
    st.add_file(path, fmt, kind, virtual_size=len(data))
    st.data["files"][st.key(path)]["content"] = base64.b64encode(data).decode("ascii")


def read_file(st: HostState, path: str) -> bytes | None:
    """The content put_file wrote at ``path``; None when the file is gone,
    or was made by os-win (a VHD from virtdisk has no content here)."""
    record = st.file(path)
    if record is None or "content" not in record:
        return None
    return base64.b64decode(record["content"])


def delete_file(st: HostState, path: str) -> None:
    """Delete ``path`` as a program other than os-win would; gone already is
    fine. Refused when a VM that is not off holds it open, as Windows does."""
    holder = st.holder_of(path)
    if holder is not None:
        raise ValueError(f"{path} is in use by {holder}")
    if st.file(path) is not None:
        del st.data["files"][st.key(path)]
