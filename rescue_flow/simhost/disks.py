"""Controllers, drives and boot order: the rules Hyper-V enforces on them.

Shared by SimVMUtils (the os-win surface) and the seeding code, so a seeded
VM is built by exactly the rules a caller's changes are checked against.
Every refusal is an ``exceptions.HyperVException``, as the failed WMI job
would surface through os-win; every check runs before anything changes.
"""

from __future__ import annotations

from typing import Any

from rescue_flow.simhost.model import (
    MAX_SCSI_CONTROLLERS,
    HostState,
    Vm,
    refuse,
    refuse_while_on,
    same_resource,
)
from rescue_flow.simhost.oswin import constants, exceptions

DISK, DVD, PASSTHROUGH = "disk", "dvd", "passthrough"
_FORMATS_FOR_KIND = {
    DISK: (constants.DISK_FORMAT_VHD, constants.DISK_FORMAT_VHDX),
    DVD: (constants.DVD_FORMAT,),
}
_BOOT_DEVICES = {constants.BOOT_DEVICE_FLOPPY, constants.BOOT_DEVICE_CDROM,
                 constants.BOOT_DEVICE_HARDDISK, constants.BOOT_DEVICE_NETWORK}


def kind_for_drive_type(drive_type: Any) -> str:
    if drive_type == constants.DISK:
        return DISK
    if drive_type == constants.DVD:
        return DVD
    raise refuse(f"unknown drive type {drive_type!r}")


def add_controller(vm: Vm, ctrl_type: str, addr: int | None = None) -> None:
    if ctrl_type == constants.CTRL_TYPE_SCSI:
        count = sum(1 for c in vm["controllers"] if c["type"] == ctrl_type)
        if count >= MAX_SCSI_CONTROLLERS:
            raise refuse(f"a VM has at most {MAX_SCSI_CONTROLLERS} SCSI controllers")
        addr = count
    vm["controllers"].append({"type": ctrl_type, "addr": addr, "slots": {}})


def attach(st: HostState, vm_name: str, path: Any, ctrl_path: Any, slot: Any,
           kind: str, serial: str | None = None) -> None:
    """Attach ``path`` at ``slot`` of the controller ``ctrl_path`` of ``vm_name``."""
    vm = st.vm(vm_name)
    found = st.find_controller(ctrl_path)
    if found is None:
        raise refuse(f"no disk controller {ctrl_path!r}")
    _, owner, ctrl = found
    if owner is not vm:
        raise refuse(f"controller {ctrl_path!r} does not belong to VM {vm_name!r}")
    try:
        slot = int(slot)
    except (TypeError, ValueError):
        raise refuse(f"invalid drive address {slot!r}") from None
    if not 0 <= slot < st.controller_slots(ctrl):
        raise refuse(f"controller {ctrl_path!r} has no slot {slot}")
    if str(slot) in ctrl["slots"]:
        raise refuse(f"slot {slot} of controller {ctrl_path!r} is in use")
    if not isinstance(path, str) or not path:
        raise refuse(f"invalid disk path {path!r}")
    if kind != PASSTHROUGH:
        record = st.file(path)
        if record is None:
            raise refuse(f"the file {path!r} does not exist")
        if record["format"] not in _FORMATS_FOR_KIND[kind]:
            raise refuse(f"a {record['format']} file cannot be attached as a {kind}")
    if ctrl["type"] == constants.CTRL_TYPE_IDE and is_on(vm):
        raise refuse_while_on(f"VM {vm_name!r} is running: IDE drives are added with "
                              f"the VM off (only SCSI disks are hot-added)")
    holder = st.find_drive(path, is_physical=kind == PASSTHROUGH)
    if holder is not None:
        raise refuse(f"{path!r} is already attached to VM {holder[0]!r}")
    if kind != PASSTHROUGH:
        user = st.holder_of(path)
        if user is not None:
            raise refuse(f"{path!r} is in use by VM {user!r} (a parent of one of its "
                          f"disks): the process cannot access the file because it is "
                          f"being used by another process")
        chain = st.parent_of_attached(path)
        if chain is not None:
            # Writing to a parent breaks every child (Hyper-V then reports the
            # chain corrupted); a checkpoint's parent is never shared.
            raise refuse(f"{path!r} is a parent in the differencing chain of a disk "
                          f"of VM {chain!r} (a checkpoint)")
    ctrl["slots"][str(slot)] = {"path": path, "type": kind, "serial": serial}
    st.boot_order_append(vm, path)


def is_on(vm: Vm) -> bool:
    """Not off: running, paused or saved, when Hyper-V refuses cold-only changes."""
    return bool(vm["state"] != constants.HYPERV_VM_STATE_DISABLED)


def detach(st: HostState, found: tuple[str, Vm, dict[str, Any], int, dict[str, Any]]
           ) -> None:
    name, vm, ctrl, slot, drive = found
    if ctrl["type"] == constants.CTRL_TYPE_IDE and is_on(vm):
        raise refuse_while_on(f"VM {name!r} is running: IDE drives are removed with "
                              f"the VM off")
    del ctrl["slots"][str(slot)]
    st.boot_order_remove(vm, drive["path"])


def attachment_info(st: HostState, found: tuple[str, Vm, dict[str, Any], int,
                                               dict[str, Any]]) -> dict[str, Any]:
    name, vm, ctrl, slot, _ = found
    if ctrl["type"] == constants.CTRL_TYPE_IDE:
        # WMI's Address property is a string; os-win returns it as is.
        addr: Any = str(ctrl["addr"])
    else:
        # SCSI controllers have no address: os-win returns their index.
        addr = st.scsi_index(vm, ctrl)
    return {"controller_slot": slot,
            "controller_path": st.controller_path(name, vm, ctrl),
            "controller_type": ctrl["type"],
            "controller_addr": addr}


def free_slot(st: HostState, ctrl_path: Any) -> int:
    # os-win counts the drives whose parent is this path and returns the
    # first free number below 64, whatever the controller type: an unknown
    # path yields 0, a full IDE controller yields 2 (the attach then fails).
    found = st.find_controller(ctrl_path)
    used = {int(s) for s in found[2]["slots"]} if found else set()
    for slot in range(constants.SCSI_CONTROLLER_SLOTS_NUMBER):
        if slot not in used:
            return slot
    raise exceptions.HyperVException("Exceeded the maximum number of slots")


def vm_drives(st: HostState, vm_name: str, kinds: tuple[str, ...]) -> list[str]:
    return [drive["path"] for _, _, _, _, drive in st.vm_drives(vm_name, st.vm(vm_name))
            if drive["type"] in kinds]


def set_boot_order(st: HostState, vm_name: str, device_boot_order: Any) -> None:
    vm = st.vm(vm_name)
    order = list(device_boot_order)
    if vm["generation"] == constants.VM_GEN_1:
        if sorted(order) != sorted(_BOOT_DEVICES):
            raise refuse(f"a Gen1 boot order lists each of {sorted(_BOOT_DEVICES)} "
                          f"once, not {order!r}")
        vm["boot_order"] = order
        return
    first: list[str] = []
    for device in order:
        if not device:
            continue  # os-win skips empty entries
        found = next((f for f in st.vm_drives(vm_name, vm)
                      if same_resource(f[4]["path"], device)), None)
        if found is None:
            raise refuse(f"{device!r} is not a drive of VM {vm_name!r}")
        if not any(same_resource(e, found[4]["path"]) for e in first):
            first.append(found[4]["path"])
    rest = [e for e in vm["boot_order"] if not any(same_resource(e, f) for f in first)]
    vm["boot_order"] = first + rest


def missing_files(st: HostState, vm_name: str) -> list[str]:
    """Image files (and their parents) a VM needs to start but that are gone."""
    missing = []
    for path in vm_drives(st, vm_name, (DISK, DVD)):
        seen = set()
        while path is not None and st.key(path) not in seen:
            seen.add(st.key(path))
            record = st.file(path)
            if record is None:
                missing.append(path)
                break
            path = record["parent"]
    return missing
