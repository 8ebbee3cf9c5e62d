"""The simulated host's state, and the lookups every utils class shares.

The state is plain JSON (so any process can load it)::

    {"format": 1, "instances_path": str, "path_style": "windows"|"posix",
     "switches": {name: {"id": str}},
     "images":   {image_id: {"generation": int, "format": "VHD"|"VHDX", "path": str}},
     "dirs":     {key: path},
     "files":    {key: {"path", "format", "parent", "kind", "virtual_size"}},
     "vms":      {name: {"id", "notes", "generation", "memory_mb", "vcpus",
                         "memory_per_numa_node", "state", "started_at",
                         "config_root", "soft_shutdown", "boot_order",
                         "controllers": [{"type": "IDE"|"SCSI", "addr": int,
                                          "slots": {"0": drive}}],
                         "nics": {name: {"mac": str, "switch": str|None}}}},
     "faults": {...}, "latency": {...}, "next_mac": int}

``key`` is the case-folded, normalised path (rescue_flow.simhost.paths):
Windows file systems ignore case, and so does the simulated one. A state
without ``path_style`` (written before it existed) has POSIX paths. A drive is ``{"path", "type":
"disk"|"dvd"|"passthrough", "serial"}``; ``path`` is the file (or, for a
passthrough disk, the host disk's WMI path) exactly as the caller gave it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from rescue_flow.simhost import oserrors, paths
from rescue_flow.simhost.oswin import constants, exceptions

STATE_FORMAT = 1
IDE_SLOTS = constants.IDE_CONTROLLER_SLOTS_NUMBER
SCSI_SLOTS = constants.SCSI_CONTROLLER_SLOTS_NUMBER
MAX_SCSI_CONTROLLERS = 4  # Hyper-V's limit per VM, both generations
MAX_NICS = 8  # synthetic NICs per VM
GEN1_DEFAULT_BOOT_ORDER = [constants.BOOT_DEVICE_CDROM, constants.BOOT_DEVICE_HARDDISK,
                           constants.BOOT_DEVICE_NETWORK, constants.BOOT_DEVICE_FLOPPY]
NETWORK_BOOT_PREFIX = "network:"
GIB = 1 << 30

Drive = dict[str, Any]
Vm = dict[str, Any]
Controller = dict[str, Any]


def new_state(instances_path: str, switches: tuple[str, ...] | list[str],
              path_style: str | None = None) -> dict[str, Any]:
    """An empty host; ``path_style`` defaults to the style of ``instances_path``."""
    style = paths.check_instances_path(instances_path, path_style)
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "instances_path": paths.normalise(style, instances_path),
        "path_style": style,
        "switches": {name: {"id": str(uuid.uuid4())} for name in switches},
        "images": {}, "dirs": {}, "files": {}, "vms": {},
        "faults": {}, "latency": {}, "next_mac": 1,
    }
    HostState(state).add_dir(instances_path)
    return state


def refuse(message: str,
           code: int = oserrors.JOB_INVALID_PARAMETER) -> exceptions.WMIJobFailed:
    """What a failed WMI job looks like to os-win's caller: WMIJobFailed with
    Msvm's return code, invalid parameter unless told otherwise."""
    return oserrors.job_failed(code, f"Hyper-V (simulated) refused: {message}")


def refuse_while_on(message: str) -> exceptions.WMIJobFailed:
    """A change Hyper-V makes only to a VM that is off: invalid state."""
    return refuse(message, code=oserrors.JOB_INVALID_STATE)


def same_resource(a: str | None, b: str | None) -> bool:
    """os-win compares disk paths with ``.lower()``; so does Hyper-V."""
    return a is not None and b is not None and a.lower() == b.lower()


def is_uuid_like(value: Any) -> bool:
    """Same test as oslo_utils.uuidutils.is_uuid_like (os-win uses it)."""
    try:
        plain = value.replace("urn:", "").replace("uuid:", "").strip("{}")
        return str(uuid.UUID(value)).replace("-", "") == plain.replace("-", "").lower()
    except (TypeError, ValueError, AttributeError):
        return False


def mac_with_colons(mac: str) -> str:
    return ":".join(mac[i:i + 2] for i in range(0, len(mac), 2))


# The sections that grow with the host: a change is looked for only among
# the entries a call touched (see HostState.touched).
TRACKED_SECTIONS = ("vms", "files", "dirs")


def untouched() -> dict[str, set[str] | None]:
    """A call's marks before it touches anything (see HostState.touched)."""
    return {name: set() for name in TRACKED_SECTIONS}


class HostState:
    """Typed-ish access to the state dict; every mutation goes through here.

    ``touched`` names, per tracked section, the entries this call was handed
    (a VM, a file record) and so may have changed; ``None`` means any entry.
    The store compares only those, plus any entry added or removed, so a
    change costs the same on a host of 2 VMs or 400. A body that edits an
    entry it got any other way must call ``touch_all``. Tests run with
    RESCUE_FLOW_SIMHOST_VERIFY=1, which compares every call's record with a
    full comparison (rescue_flow.simhost.store), so a missing mark fails them.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.touched = untouched()
        self.style = data.get("path_style", paths.POSIX)
        self.paths = paths.module(self.style)

    def key(self, path: str) -> str:
        """Where the file system finds ``path`` (case-folded, normalised)."""
        return paths.key(self.style, path)

    def normpath(self, path: str) -> str:
        return paths.normalise(self.style, path)

    def touch(self, section: str, key: str) -> None:
        keys = self.touched[section]
        if keys is not None:
            keys.add(key)

    def touch_all(self, section: str) -> None:
        self.touched[section] = None

    # -- files and folders ------------------------------------------------

    def dir_exists(self, path: str) -> bool:
        return self.key(path) in self.data["dirs"]

    def add_dir(self, path: str) -> None:
        path = self.normpath(path)
        while True:
            key = self.key(path)
            self.touch("dirs", key)
            self.data["dirs"].setdefault(key, path)
            parent = self.paths.dirname(path)
            if parent == path or not parent or self.key(parent) == key:
                return
            path = parent

    def parent_dir_exists(self, path: str) -> bool:
        parent = self.paths.dirname(self.normpath(path))
        return not parent or self.dir_exists(parent)

    def file(self, path: str) -> dict[str, Any] | None:
        key = self.key(path)
        self.touch("files", key)
        return self.data["files"].get(key)

    def add_file(self, path: str, fmt: str, kind: str, parent: str | None = None,
                 virtual_size: int = GIB) -> None:
        self.touch("files", self.key(path))
        self.data["files"][self.key(path)] = {
            "path": self.normpath(path), "format": fmt, "parent": parent,
            "kind": kind, "virtual_size": virtual_size}

    def exists(self, path: str) -> bool:
        return self.file(path) is not None or self.dir_exists(path)

    # -- VMs ----------------------------------------------------------------

    def vm_key(self, vm_name: Any) -> str | None:
        """The name ``vm_name`` finds: WQL compares ElementName ignoring case."""
        vms = self.data["vms"]
        if not isinstance(vm_name, str):
            return None
        if vm_name in vms:
            return vm_name  # the usual spelling: no scan of the host
        folded = vm_name.casefold()
        return next((name for name in vms if name.casefold() == folded), None)

    def vm(self, vm_name: str) -> Vm:
        key = self.vm_key(vm_name)
        if key is None:
            raise exceptions.HyperVVMNotFoundException(vm_name=vm_name)
        self.touch("vms", key)
        return self.data["vms"][key]

    def switch_name(self, vswitch_name: Any) -> str | None:
        """The switch ``vswitch_name`` finds, ignoring case as WQL does."""
        if not isinstance(vswitch_name, str):
            return None
        folded = vswitch_name.casefold()
        return next((name for name in self.data["switches"]
                     if name.casefold() == folded), None)

    # -- files held open by running VMs ------------------------------------------

    def _chains(self, running_only: bool) -> Iterator[tuple[str, list[str]]]:
        """(VM name, keys of a drive's file and its parents, drive first) for
        every image-file drive, of the VMs that are not off if asked."""
        files = self.data["files"]
        for name, vm in self.data["vms"].items():
            if running_only and vm["state"] == constants.HYPERV_VM_STATE_DISABLED:
                continue
            for ctrl in vm["controllers"]:
                for drive in ctrl["slots"].values():
                    if drive["type"] == "passthrough":
                        continue
                    chain: list[str] = []
                    link = drive["path"]
                    while link is not None and len(chain) < 64:  # a loop stops too
                        chain.append(self.key(link))
                        record = files.get(chain[-1])
                        link = record["parent"] if record else None
                    yield name, chain

    def holder_of(self, path: str) -> str | None:
        """The VM (not off) that holds ``path`` open: as a drive or as a parent
        of one of its drives (a differencing chain opens every parent)."""
        wanted = self.key(path)
        return next((name for name, chain in self._chains(running_only=True)
                     if wanted in chain), None)

    def parent_of_attached(self, path: str) -> str | None:
        """A VM with a drive whose differencing chain has ``path`` as a parent."""
        wanted = self.key(path)
        return next((name for name, chain in self._chains(running_only=False)
                     if wanted in chain[1:]), None)

    def vm_names(self) -> list[str]:
        return sorted(self.data["vms"])

    # -- controllers and drives ----------------------------------------------

    @staticmethod
    def controller_path(vm_name: str, vm: Vm, ctrl: Controller) -> str:
        # Opaque like a WMI path; the VM id makes a path go stale when the VM
        # is destroyed, even if a new VM later gets the same name.
        return f"sim:{vm_name}:{vm['id']}/{ctrl['type']}/{ctrl['addr']}"

    def controllers(self) -> Iterator[tuple[str, Vm, Controller]]:
        self.touch_all("vms")  # hands out every VM
        for name, vm in self.data["vms"].items():
            for ctrl in vm["controllers"]:
                yield name, vm, ctrl

    def find_controller(self, ctrl_path: Any) -> tuple[str, Vm, Controller] | None:
        if not isinstance(ctrl_path, str):
            return None
        # The path names its VM: look there first, so a lookup costs the same
        # on a host of 2 VMs or 200. Names differing only in case, or a path
        # that does not parse, fall back to searching every controller.
        owner = ctrl_path[4:].rsplit("/", 2)[0].rpartition(":")[0] \
            if ctrl_path.startswith("sim:") else ""
        vm = self.data["vms"].get(owner)
        if vm is not None:
            for ctrl in vm["controllers"]:
                if same_resource(self.controller_path(owner, vm, ctrl), ctrl_path):
                    self.touch("vms", owner)
                    return owner, vm, ctrl
        for name, vm, ctrl in self.controllers():
            if same_resource(self.controller_path(name, vm, ctrl), ctrl_path):
                return name, vm, ctrl
        return None

    @staticmethod
    def controller_slots(ctrl: Controller) -> int:
        return IDE_SLOTS if ctrl["type"] == constants.CTRL_TYPE_IDE else SCSI_SLOTS

    def drives(self) -> Iterator[tuple[str, Vm, Controller, int, Drive]]:
        self.touch_all("vms")  # hands out every VM
        for name, vm in self.data["vms"].items():
            yield from self.vm_drives(name, vm)

    @staticmethod
    def vm_drives(name: str, vm: Vm) -> Iterator[tuple[str, Vm, Controller, int, Drive]]:
        """One VM's drives, in controller order, then slot order."""
        for ctrl in vm["controllers"]:
            slots = ctrl["slots"]
            for slot in sorted(map(int, slots)) if len(slots) > 1 else map(int, slots):
                yield name, vm, ctrl, slot, slots[str(slot)]

    def find_drive(self, path: str | None, is_physical: bool, serial: str | None = None
                   ) -> tuple[str, Vm, Controller, int, Drive] | None:
        """The drive os-win's ``_get_mounted_disk_resource_from_path`` finds.

        ``is_physical=True`` searches passthrough disks only (os-win queries
        Msvm_ResourceAllocationSettingData); ``False`` searches image files,
        VHD(X) and ISO (Msvm_StorageAllocationSettingData). A serial matches
        the passthrough disk's ElementName instead of the path.
        """
        # Every drive of the host is looked at (os-win's query is host-wide),
        # so the loop is written for speed: a VM's drives are only put in
        # slot order once one of them matches.
        physical = bool(is_physical)
        if not serial and path is None:
            return None
        wanted = None if serial else path.lower()  # type: ignore[union-attr]
        for name, vm in self.data["vms"].items():
            for ctrl in vm["controllers"]:
                for drive in ctrl["slots"].values():
                    if (drive["type"] == "passthrough") is not physical:
                        continue
                    if drive.get("serial") == serial if serial \
                            else drive["path"].lower() == wanted:
                        self.touch("vms", name)
                        return next(found for found in self.vm_drives(name, vm)
                                    if self._matches(found[4], physical, path, serial))
        return None

    @staticmethod
    def _matches(drive: Drive, physical: bool, path: str | None,
                 serial: str | None) -> bool:
        if (drive["type"] == "passthrough") is not physical:
            return False
        return drive.get("serial") == serial if serial else same_resource(drive["path"], path)

    def scsi_index(self, vm: Vm, ctrl: Controller) -> int:
        scsi = [c for c in vm["controllers"] if c["type"] == constants.CTRL_TYPE_SCSI]
        return scsi.index(ctrl)

    # -- NICs ---------------------------------------------------------------

    def find_nic(self, nic_name: str) -> tuple[str, Vm, dict[str, Any]] | None:
        """The NIC by name, ignoring case as WQL does (exact spelling first)."""
        for name, vm in self.data["vms"].items():
            nic = vm["nics"].get(nic_name)
            if nic is not None:
                self.touch("vms", name)
                return name, vm, nic
        folded = nic_name.casefold() if isinstance(nic_name, str) else None
        for name, vm in self.data["vms"].items():
            for real, nic in vm["nics"].items():
                if real.casefold() == folded:
                    self.touch("vms", name)
                    return name, vm, nic
        return None

    def nic_key(self, vm: Vm, nic_name: str) -> str | None:
        folded = nic_name.casefold()
        return next((real for real in vm["nics"] if real.casefold() == folded), None)

    def add_nic(self, vm: Vm, nic_name: str, mac: str) -> dict[str, Any]:
        """Add an unconnected NIC; ``mac`` is 12 upper-case hex digits."""
        if self.find_nic(nic_name) is not None:
            raise refuse(f"a NIC named {nic_name!r} exists on this host")
        if len(vm["nics"]) >= MAX_NICS:
            raise refuse(f"a VM has at most {MAX_NICS} network adapters")
        nic = vm["nics"][nic_name] = {"mac": mac, "switch": None}
        self.boot_order_append(vm, NETWORK_BOOT_PREFIX + nic_name)
        return nic

    def next_dynamic_mac(self) -> str:
        # Hyper-V hands out dynamic MACs from its 00-15-5D range.
        n = self.data["next_mac"]
        self.data["next_mac"] = n + 1
        return f"00155D{n:06X}"

    # -- invariants used by several utils --------------------------------------

    def boot_order_remove(self, vm: Vm, entry: str) -> None:
        if vm["generation"] == constants.VM_GEN_2:
            vm["boot_order"] = [e for e in vm["boot_order"] if not same_resource(e, entry)]

    def boot_order_append(self, vm: Vm, entry: str) -> None:
        if vm["generation"] == constants.VM_GEN_2:
            vm["boot_order"].append(entry)
