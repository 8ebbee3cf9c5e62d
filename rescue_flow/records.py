"""Plain records of what a VM looks like, shared by the adapter and the flows.

These are the project's own types: flows and tasks never see os-win's WMI
objects. They serialize to JSON because they travel in TaskFlow's storage and
in the rescue VM's notes ("the host alone tells what to undo").
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

CTRL_IDE = "IDE"
CTRL_SCSI = "SCSI"

POWER_RUNNING = "running"
POWER_OFF = "off"
POWER_PAUSED = "paused"
POWER_SAVED = "saved"
POWER_OTHER = "other"

DRIVE_DISK = "disk"
DRIVE_DVD = "dvd"
DRIVE_VOLUME = "volume"  # a passthrough disk: the instance boots from a volume

GEN1 = 1
GEN2 = 2


@dataclasses.dataclass(frozen=True)
class DiskAttachment:
    """A disk image attached to a VM at one controller slot."""

    path: str
    controller_type: str  # CTRL_IDE or CTRL_SCSI
    controller_addr: int  # IDE controller 0/1; index of the SCSI controller
    slot: int
    drive_type: str = DRIVE_DISK


@dataclasses.dataclass(frozen=True)
class Nic:
    """A synthetic NIC: its name, its MAC (``AA:BB:CC:DD:EE:FF``) and its switch."""

    name: str
    mac: str
    switch: str | None  # None: not connected to any known virtual switch


@dataclasses.dataclass(frozen=True)
class VMConfig:
    """What the flows touch on a VM or must restore on it."""

    name: str
    instance_uuid: str
    generation: int
    memory_mb: int
    vcpus: int
    power_state: str
    disks: tuple[DiskAttachment, ...]
    nics: tuple[Nic, ...]
    # Gen1: device types in boot order (os-win's BOOT_DEVICE_* values).
    # Gen2: disk paths in boot order; network boot entries follow them.
    boot_order: tuple[Any, ...]
    instance_dir: str

    @property
    def root_disk(self) -> DiskAttachment:
        """The instance's local root disk (``root.vhd`` or ``root.vhdx``)."""
        for disk in self.disks:
            if is_root_disk_path(disk.path):
                return disk
        raise LookupError(f"VM {self.name} has no local root disk")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VMConfig:
        fields = dict(data)
        fields["disks"] = tuple(DiskAttachment(**d) for d in data["disks"])
        fields["nics"] = tuple(Nic(**n) for n in data["nics"])
        fields["boot_order"] = tuple(data["boot_order"])
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VMConfig:
        return cls.from_dict(json.loads(text))


def is_checkpoint_disk_path(path: str) -> bool:
    """A checkpoint's differencing disk (Hyper-V names it ``<stem>_<GUID>.avhdx``)."""
    return path.lower().endswith((".avhd", ".avhdx"))


@dataclasses.dataclass(frozen=True)
class SecureBoot:
    """The rescue image's Secure Boot wish (Glance os_secure_boot, os_type)."""

    required: bool
    os_type: str | None = None

    @property
    def msft_ca_required(self) -> bool:
        """compute-hyperv's rule: every guest but Windows needs the Microsoft
        UEFI Certificate Authority template."""
        return self.os_type != "windows"

    @classmethod
    def from_request(cls, os_secure_boot: str | None, os_type: str | None
                     ) -> SecureBoot | None:
        if os_secure_boot is None:
            return None
        return cls(os_secure_boot == "required", os_type)


def _file_name(path: str) -> str:
    """The file's name, lower case, from a Windows or POSIX path."""
    return path.replace("\\", "/").rsplit("/", 1)[-1].lower()


def drive_type_of(path: str) -> str:
    """The drive an image file sits in, told by its extension: Hyper-V puts
    only ISO files in a DVD drive, and only VHD(X) files in a hard drive."""
    return DRIVE_DVD if _file_name(path).endswith(".iso") else DRIVE_DISK


def is_root_disk_path(path: str) -> bool:
    """True for Nova's local root disk file names on Hyper-V."""
    name = _file_name(path)
    return name in ("root.vhd", "root.vhdx")
