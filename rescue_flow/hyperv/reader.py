"""Reading a Hyper-V host: which VM serves an instance, and what it looks like.

os-win has no getter for a VM's boot order. Gen1's order is by device type
and no disk change alters it, so the record leaves it empty. On Gen2 the order
names disks; Nova put the root disk first, so the record keeps the root disk
first and a restore sets exactly that (os-win keeps the other entries after).
"""

from __future__ import annotations

import logging
import ntpath
import posixpath
from typing import Any

from rescue_flow import exceptions as rf_exc
from rescue_flow import records
from rescue_flow.hyperv.calls import OsWinCaller
from rescue_flow.hyperv.oswin import constants

LOG = logging.getLogger(__name__)
Notes = list[tuple[str, list[str]]]  # (VM name, its notes), as os-win lists them

# The first note of a rescue VM. It is not a UUID, so os-win's
# get_instance_uuid() (and Nova) never take the rescue VM for an instance.
RESCUE_VM_MARKER = "rescue-flow:rescue-vm"

POWER_STATES = {
    constants.HYPERV_VM_STATE_ENABLED: records.POWER_RUNNING,
    constants.HYPERV_VM_STATE_DISABLED: records.POWER_OFF,
    constants.HYPERV_VM_STATE_PAUSED: records.POWER_PAUSED,
    constants.HYPERV_VM_STATE_SUSPENDED: records.POWER_SAVED,
}


def path_module(path: str) -> Any:
    """ntpath for Windows paths (the real host), posixpath for the simulated one."""
    return ntpath if ("\\" in path or (len(path) > 1 and path[1] == ":")) else posixpath


def format_mac(address: str) -> str:
    """os-win reports MACs as 12 hex digits; records use AA:BB:CC:DD:EE:FF."""
    digits = address.replace(":", "").replace("-", "").upper()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


class RescueVM:
    """A rescue VM found on the host, with the record its notes carry."""

    def __init__(self, name: str, instance_uuid: str, record: records.VMConfig | None,
                 request_id: str | None) -> None:
        self.name = name
        self.instance_uuid = instance_uuid
        self.record = record
        self.request_id = request_id


def rescue_vm_notes(instance_uuid: str, record: records.VMConfig,
                    request_id: str) -> list[str]:
    return [RESCUE_VM_MARKER, instance_uuid, record.to_json(), request_id]


class HostReader:
    """Read-only views of the host, built from os-win's public getters."""

    def __init__(self, utils: dict[str, Any], caller: OsWinCaller,
                 instances_path: str, vswitch_names: list[str]) -> None:
        self._vm = utils["vmutils"]
        self._vhd = utils["vhdutils"]
        self._path = utils["pathutils"]
        self._net = utils["netutils"]
        self._call = caller
        self.instances_path = instances_path
        self.paths = path_module(instances_path)
        self._vswitch_names = list(vswitch_names)

    def notes_by_vm(self) -> Notes:
        """Every VM's notes: a host-wide WMI query, so read once and passed on."""
        return [(name, list(notes))
                for name, notes in self._call(self._vm, "list_instance_notes")]

    def find_instance_vm(self, instance_uuid: str, notes: Notes | None = None
                         ) -> str | None:
        """The name of the VM whose notes name this instance, as Nova wrote them."""
        listing = self.notes_by_vm() if notes is None else notes
        names = [name for name, notes in listing
                 if notes and notes[0].lower() == instance_uuid]
        if len(names) > 1:
            LOG.warning("Several VMs carry instance %s: %s; using %s",
                        instance_uuid, names, names[0])
        return names[0] if names else None

    def find_rescue_vm(self, instance_uuid: str, notes: Notes | None = None
                       ) -> RescueVM | None:
        """The rescue VM of this instance, if one exists, with its recorded config."""
        listing = self.notes_by_vm() if notes is None else notes
        for name, vm_notes in listing:
            if len(vm_notes) >= 2 and vm_notes[0] == RESCUE_VM_MARKER and \
                    vm_notes[1] == instance_uuid:
                record = None
                if len(vm_notes) >= 3:
                    try:
                        record = records.VMConfig.from_json(vm_notes[2])
                    except (ValueError, KeyError, TypeError):
                        LOG.warning("Rescue VM %s has an unreadable record", name)
                request_id = vm_notes[3] if len(vm_notes) >= 4 else None
                return RescueVM(name, instance_uuid, record, request_id)
        return None

    def vm_exists(self, vm_name: str) -> bool:
        return bool(self._call(self._vm, "vm_exists", vm_name))

    def power_state(self, vm_name: str) -> str:
        state = self._call(self._vm, "get_vm_state", vm_name)
        return POWER_STATES.get(state, records.POWER_OTHER)

    def vm_storage(self, vm_name: str) -> tuple[list[str], list[str]]:
        """The VM's disk files (VHD, VHDX, ISO) and its passthrough volumes."""
        disk_files, volumes = self._call(self._vm, "get_vm_storage_paths", vm_name)
        return list(disk_files), list(volumes)

    def vm_disk_paths(self, vm_name: str) -> list[str]:
        return self.vm_storage(vm_name)[0]

    def disk_attached_to(self, vm_name: str, path: str) -> bool:
        wanted = path.lower()
        return any(p.lower() == wanted for p in self.vm_disk_paths(vm_name))

    def disk_attachment(self, path: str, drive_type: str,
                        is_physical: bool = False) -> records.DiskAttachment:
        info = self._call(self._vm, "get_disk_attachment_info", path,
                          is_physical=is_physical)
        return records.DiskAttachment(
            path=path, controller_type=info["controller_type"],
            controller_addr=int(info["controller_addr"]),
            slot=int(info["controller_slot"]), drive_type=drive_type)

    def vm_nics(self, vm_name: str) -> list[records.Nic]:
        nics = []
        for nic_name in self._call(self._vm, "get_vm_nic_names", vm_name):
            mac = format_mac(self._call(self._net, "get_vnic_mac_address", nic_name))
            nics.append(records.Nic(nic_name, mac, self._switch_of(nic_name)))
        return sorted(nics, key=lambda nic: nic.name)

    def _switch_of(self, nic_name: str) -> str | None:
        for switch in self._vswitch_names:
            try:
                if self._call(self._net, "get_port_by_id", nic_name, switch):
                    return switch
            except rf_exc.HyperVObjectNotFound:  # os-win's HyperVvSwitchNotFound
                if self._switch_exists(switch):
                    raise  # the switch is there: the lookup failed, not the config
                LOG.warning("[hyperv] vswitch_names lists %s, which this host lacks",
                            switch)
        LOG.warning("NIC %s is connected to none of [hyperv] vswitch_names %s",
                    nic_name, self._vswitch_names)
        return None

    def _switch_exists(self, switch: str) -> bool:
        try:
            self._call(self._net, "get_vswitch_id", switch)
        except rf_exc.HyperVObjectNotFound:
            return False
        return True

    def read_vm_config(self, vm_name: str, notes: Notes | None = None,
                       storage: tuple[list[str], list[str]] | None = None
                       ) -> records.VMConfig:
        """Record what the flows will touch on ``vm_name`` or must restore;
        ``notes`` and ``storage`` (``vm_storage``): what the caller has read."""
        vm_notes = dict(self.notes_by_vm() if notes is None else notes).get(vm_name, [])
        generation = int(self._call(self._vm, "get_vm_generation", vm_name))
        memory = self._call(self._vm, "get_vm_memory_info", vm_name)
        summary = self._call(self._vm, "get_vm_summary_info", vm_name)
        disk_files, volumes = self.vm_storage(vm_name) if storage is None else storage
        # The drive type from the file's extension, not os-win's
        # get_vm_dvd_disk_paths: one WMI query less, the same answer.
        disks = [self.disk_attachment(path, records.drive_type_of(path))
                 for path in disk_files]
        disks += [self.disk_attachment(path, records.DRIVE_VOLUME, is_physical=True)
                  for path in volumes]
        disks.sort(key=lambda d: (d.controller_type, d.controller_addr, d.slot))
        root = next((d for d in disks if records.is_root_disk_path(d.path)), None)
        instance_dir = (self.paths.dirname(root.path) if root
                        else self.paths.join(self.instances_path, vm_name))
        boot_order: tuple[Any, ...] = ()
        if generation == records.GEN2 and root is not None:
            boot_order = (root.path,)
        return records.VMConfig(
            name=vm_name,
            instance_uuid=vm_notes[0] if vm_notes else "",
            generation=generation,
            memory_mb=int(memory["Limit"]),
            vcpus=int(summary["NumberOfProcessors"]),
            power_state=POWER_STATES.get(summary["EnabledState"], records.POWER_OTHER),
            disks=tuple(disks),
            nics=tuple(self.vm_nics(vm_name)),
            boot_order=boot_order,
            instance_dir=instance_dir,
        )

    def file_exists(self, path: str) -> bool:
        return bool(self._call(self._path, "exists", path))

    def disk_format(self, path: str) -> str:
        """``"VHD"`` or ``"VHDX"``."""
        return str(self._call(self._vhd, "get_vhd_format", path)).upper()

    def disk_parent(self, path: str) -> str | None:
        info = self._call(self._vhd, "get_vhd_info", path)
        return info.get("ParentPath") or None
