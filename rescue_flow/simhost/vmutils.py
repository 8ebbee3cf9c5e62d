"""SimVMUtils: os_win.utils.compute.vmutils.VMUtils over the state file.

Same method names and signatures as os-win 5.9.0 (the contract test checks
them), same return shapes, same exception classes. Where os-win ignores an
argument (``vm_name`` of detach_vm_disk and destroy_nic, ``is_planned_vm``),
so does this class. Traps kept on purpose, because the real host has them:

- ``is_physical`` defaults to True in detach_vm_disk, is_disk_attached and
  get_disk_attachment_info, and then only passthrough disks match: for a
  VHD(X) or ISO file pass ``is_physical=False``, or the disk is "not
  attached" and a detach silently does nothing.
- get_disk_attachment_info's ``controller_addr`` is a string ("0", "1") for
  IDE (WMI's Address property) and an int index for SCSI.
- Starting a VM whose image file (or a parent of it) is missing fails with
  WMIJobFailed, which os-win's set_vm_state has already retried.

The os-win parameters carry no type hints on purpose: ``inspect.signature``
compares annotations too, and os-win has none.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from rescue_flow.simhost import disks
from rescue_flow.simhost.engine import SimUtils, oswin_call
from rescue_flow.simhost.model import (
    GEN1_DEFAULT_BOOT_ORDER,
    NETWORK_BOOT_PREFIX,
    HostState,
    is_uuid_like,
    refuse,
    refuse_while_on,
)
from rescue_flow.simhost.oswin import constants, exceptions

ENABLED = constants.HYPERV_VM_STATE_ENABLED
DISABLED = constants.HYPERV_VM_STATE_DISABLED
_POWER_STATES = (ENABLED, DISABLED, constants.HYPERV_VM_STATE_REBOOT,
                 constants.HYPERV_VM_STATE_PAUSED, constants.HYPERV_VM_STATE_SUSPENDED)
# Pause and save, and the states Hyper-V accepts them from.
_ENTERED_FROM = {
    constants.HYPERV_VM_STATE_PAUSED: (ENABLED,),
    constants.HYPERV_VM_STATE_SUSPENDED: (ENABLED, constants.HYPERV_VM_STATE_PAUSED),
}
_DEFAULT_MEMORY_MB = 512  # what Hyper-V gives a VM defined without memory settings
_MEMORY_WEIGHT = 5000  # Hyper-V's default memory weight
_NUMA_NODE_MB = 65536  # MaxMemoryBlocksPerNumaNode of a host with 64 GiB per node
# Hyper-V's Secure Boot templates (Msvm_VirtualSystemSettingData ElementName).
SECURE_BOOT_WINDOWS = "MicrosoftWindows"
SECURE_BOOT_LINUX = "MicrosoftUEFICertificateAuthority"


def _start(st: HostState, vm_name: str, vm: dict[str, Any]) -> None:
    missing = disks.missing_files(st, vm_name)
    if missing:
        # The start job fails; os-win's set_vm_state retries WMIJobFailed
        # five times, then lets it through, as here.
        raise exceptions.WMIJobFailed(
            job_state=constants.JOB_STATE_EXCEPTION, error_code=32768,
            error_summ_desc=f"'{vm_name}' failed to start.",
            error_desc=f"The system cannot find the file specified: {missing[0]}")
    vm["state"] = ENABLED
    vm["started_at"] = time.time()


class SimVMUtils(SimUtils):
    """VMs: lifecycle, power, memory and CPUs, disks, NICs, boot order."""

    # -- listing and looking up ---------------------------------------------

    @oswin_call(mutates=False, fresh_result=True)
    def list_instance_notes(self, st: HostState):
        return [(name, [n for n in vm["notes"] if n])
                for name, vm in sorted(st.data["vms"].items())
                if vm["notes"] is not None and name]

    @oswin_call(mutates=False, fresh_result=True)
    def list_instances(self, st: HostState):
        """Return the names of all the instances known to Hyper-V (sorted)."""
        return st.vm_names()

    @oswin_call(mutates=False)
    def vm_exists(self, st: HostState, vm_name):
        return st.vm_key(vm_name) is not None

    @oswin_call(mutates=False)
    def get_vm_generation(self, st: HostState, vm_name):
        return st.vm(vm_name)["generation"]

    @oswin_call(mutates=False)
    def get_vm_summary_info(self, st: HostState, vm_name):
        vm = st.vm(vm_name)
        running = vm["state"] == ENABLED
        started = vm.get("started_at")
        return {"NumberOfProcessors": vm["vcpus"],
                "EnabledState": vm["state"],
                "MemoryUsage": vm["memory_mb"] if running else 0,
                "UpTime": int((time.time() - started) * 1000)
                if running and started else 0}

    @oswin_call(mutates=False)
    def get_vm_state(self, st: HostState, vm_name):
        return st.vm(vm_name)["state"]

    @oswin_call(mutates=False)
    def get_vm_memory_info(self, st: HostState, vm_name):
        vm = st.vm(vm_name)
        return {"DynamicMemoryEnabled": False,
                "Reservation": vm["memory_mb"],
                "Limit": vm["memory_mb"],
                "Weight": _MEMORY_WEIGHT,
                "MaxMemoryBlocksPerNumaNode": vm["memory_per_numa_node"] or _NUMA_NODE_MB}

    @oswin_call(mutates=False)
    def get_instance_uuid(self, st: HostState, vm_name):
        notes = [n for n in st.vm(vm_name)["notes"] or [] if n]
        if notes and is_uuid_like(notes[0]):
            return notes[0]
        return None

    @oswin_call(mutates=False)
    def get_vm_config_root_dir(self, st: HostState, vm_name):
        return st.vm(vm_name)["config_root"]

    # -- lifecycle and power --------------------------------------------------

    @oswin_call(mutates=True)
    def create_vm(self, st: HostState, vm_name, vnuma_enabled, vm_gen, instance_path, notes=None):
        """Define a VM (off, 512 MB, 1 vCPU; Gen1 gets IDE controllers 0 and 1).

        Unlike real Hyper-V, which allows two VMs with one name (and os-win
        then fails on every lookup of that name), a duplicate name (ignoring
        case, as lookups do) is refused.
        """
        if st.vm_key(vm_name) is not None:
            raise refuse(f"a VM named {vm_name!r} exists (the simulated host "
                          f"does not model duplicate names)")
        gen = constants.VM_GEN_2 if vm_gen == constants.VM_GEN_2 else constants.VM_GEN_1
        if isinstance(notes, str):
            notes = [notes]
        st.data["vms"][vm_name] = new_vm_record(gen, instance_path, notes)

    @oswin_call(mutates=True)
    def update_vm(self, st: HostState, vm_name, memory_mb, memory_per_numa_node, vcpus_num,
                  vcpus_per_numa_node, limit_cpu_features, dynamic_mem_ratio,
                  configuration_root_dir=None, snapshot_dir=None,
                  host_shutdown_action=None, vnuma_enabled=None,
                  snapshot_type=None, is_planned_vm=False, chassis_asset_tag=None):
        """Set memory (static: dynamic_mem_ratio is ignored), vCPUs, config root.

        The vCPU count of a running VM cannot change (Hyper-V refuses the
        job); static memory can, as on Windows Server 2016 and later.
        """
        vm = st.vm(vm_name)
        if int(memory_mb) < 32 or int(vcpus_num) < 1:
            raise refuse(f"memory {memory_mb} MB / {vcpus_num} vCPUs is invalid")
        if disks.is_on(vm) and int(vcpus_num) != vm["vcpus"]:
            raise refuse_while_on(f"VM {vm_name!r} is running: its vCPU count changes only "
                          f"while it is off")
        vm["memory_mb"] = int(memory_mb)
        vm["vcpus"] = int(vcpus_num)
        if memory_per_numa_node:
            vm["memory_per_numa_node"] = int(memory_per_numa_node)
        if configuration_root_dir:
            vm["config_root"] = configuration_root_dir

    @oswin_call(mutates=True)
    def destroy_vm(self, st: HostState, vm_name):
        """Remove the VM with its NICs; its disk files stay, now detached."""
        st.vm(vm_name)
        del st.data["vms"][st.vm_key(vm_name)]

    @oswin_call(mutates=True)
    def set_vm_state(self, st: HostState, vm_name, req_state):
        """Set the desired state of the VM; the state it is in already is fine."""
        vm = st.vm(vm_name)
        if req_state not in _POWER_STATES:
            raise KeyError(req_state)  # os-win indexes its state map
        current = vm["state"]
        if req_state == ENABLED and current != ENABLED:
            if current == constants.HYPERV_VM_STATE_PAUSED:
                vm["state"] = ENABLED  # resume: the guest keeps running
            else:
                _start(st, vm_name, vm)
        elif req_state == DISABLED:
            vm["state"], vm["started_at"] = DISABLED, None
        elif req_state == constants.HYPERV_VM_STATE_REBOOT and current == ENABLED:
            vm["started_at"] = time.time()
        elif current in _ENTERED_FROM.get(req_state, ()):
            vm["state"] = req_state  # pause, or save
        # Any other request is "invalid in the current state" (32775), which
        # os-win accepts as success: nothing changes.

    @oswin_call(mutates=True)
    def soft_shutdown_vm(self, st: HostState, vm_name):
        """Ask the guest to shut down: a "clean" guest turns off at once, a
        "hang" guest ignores the request (the VM stays on)."""
        vm = st.vm(vm_name)
        if vm["state"] == ENABLED and vm["soft_shutdown"] == "clean":
            vm["state"], vm["started_at"] = DISABLED, None

    # -- controllers and disks ------------------------------------------------

    @oswin_call(mutates=True)
    def create_scsi_controller(self, st: HostState, vm_name):
        vm = st.vm(vm_name)
        if disks.is_on(vm):
            raise refuse_while_on(f"VM {vm_name!r} is running: controllers are added with "
                          f"the VM off")
        disks.add_controller(vm, constants.CTRL_TYPE_SCSI)

    @oswin_call(mutates=False)
    def get_vm_scsi_controller(self, st: HostState, vm_name):
        vm = st.vm(vm_name)
        for ctrl in vm["controllers"]:
            if ctrl["type"] == constants.CTRL_TYPE_SCSI:
                return st.controller_path(vm_name, vm, ctrl)
        return None

    @oswin_call(mutates=False)
    def get_vm_ide_controller(self, st: HostState, vm_name, ctrller_addr):
        vm = st.vm(vm_name)
        for ctrl in vm["controllers"]:
            if ctrl["type"] == constants.CTRL_TYPE_IDE and \
                    str(ctrl["addr"]) == str(ctrller_addr):
                return st.controller_path(vm_name, vm, ctrl)
        return None

    @oswin_call(mutates=False)
    def get_free_controller_slot(self, st: HostState, scsi_controller_path):
        return disks.free_slot(st, scsi_controller_path)

    @oswin_call(mutates=True)
    def attach_drive(self, st: HostState, vm_name, path, ctrller_path, drive_addr,
                     drive_type=constants.DISK):
        """Create a drive and attach it to the vm."""
        disks.attach(st, vm_name, path, ctrller_path, drive_addr,
                     disks.kind_for_drive_type(drive_type))

    @oswin_call(mutates=True)
    def attach_ide_drive(self, st: HostState, vm_name, path, ctrller_addr, drive_addr,
                         drive_type=constants.DISK):
        vm = st.vm(vm_name)
        ctrl = next((c for c in vm["controllers"] if c["type"] == constants.CTRL_TYPE_IDE
                     and str(c["addr"]) == str(ctrller_addr)), None)
        ctrl_path = st.controller_path(vm_name, vm, ctrl) if ctrl else None
        disks.attach(st, vm_name, path, ctrl_path, drive_addr,
                     disks.kind_for_drive_type(drive_type))

    @oswin_call(mutates=True)
    def attach_scsi_drive(self, st: HostState, vm_name, path, drive_type=constants.DISK):
        """Attach at the first free slot of the first SCSI controller.

        A VM without one is refused with HyperVException (os-win itself
        would fail with AttributeError on the missing controller path).
        """
        vm = st.vm(vm_name)
        ctrl = next((c for c in vm["controllers"]
                     if c["type"] == constants.CTRL_TYPE_SCSI), None)
        if ctrl is None:
            raise refuse(f"VM {vm_name!r} has no SCSI controller")
        ctrl_path = st.controller_path(vm_name, vm, ctrl)
        disks.attach(st, vm_name, path, ctrl_path, disks.free_slot(st, ctrl_path),
                     disks.kind_for_drive_type(drive_type))

    @oswin_call(mutates=True)
    def attach_volume_to_controller(self, st: HostState, vm_name, controller_path, address,
                                    mounted_disk_path, serial=None):
        """Attach a volume to a controller."""
        disks.attach(st, vm_name, mounted_disk_path, controller_path, address,
                     disks.PASSTHROUGH, serial=serial)

    @oswin_call(mutates=True)
    def detach_vm_disk(self, st: HostState, vm_name, disk_path=None, is_physical=True,
                       serial=None):
        """Detach the disk from whichever VM holds it (vm_name is ignored, as
        in os-win); nothing happens when it is not attached."""
        found = st.find_drive(disk_path, is_physical, serial)
        if found is not None:
            disks.detach(st, found)

    @oswin_call(mutates=False)
    def is_disk_attached(self, st: HostState, disk_path, is_physical=True):
        return st.find_drive(disk_path, is_physical) is not None

    @oswin_call(mutates=False)
    def get_disk_attachment_info(self, st: HostState, attached_disk_path=None,
                                 is_physical=True, serial=None):
        found = st.find_drive(attached_disk_path, is_physical, serial)
        if found is None:
            raise exceptions.DiskNotFound(
                f"Disk '{attached_disk_path}' is not attached to a vm.")
        return disks.attachment_info(st, found)

    @oswin_call(mutates=False)
    def get_vm_storage_paths(self, st: HostState, vm_name, is_planned_vm=False):
        return (disks.vm_drives(st, vm_name, (disks.DISK, disks.DVD)),
                disks.vm_drives(st, vm_name, (disks.PASSTHROUGH,)))

    @oswin_call(mutates=False)
    def get_vm_dvd_disk_paths(self, st: HostState, vm_name):
        return disks.vm_drives(st, vm_name, (disks.DVD,))

    @oswin_call(mutates=True)
    def set_boot_order(self, st: HostState, vm_name, device_boot_order):
        """Gen1: a tuple of BOOT_DEVICE_* values. Gen2: drive paths of this VM,
        which go first; the other entries follow in their old order (os-win
        appends them as an unordered set)."""
        disks.set_boot_order(st, vm_name, device_boot_order)

    # -- NICs -------------------------------------------------------------------

    @oswin_call(mutates=True)
    def create_nic(self, st: HostState, vm_name, nic_name, mac_address=None):
        """Create a (synthetic) nic and attach it to the vm.

        NIC names are unique on the host here: os-win finds NICs by name, so
        a second NIC with the same name (which Hyper-V would allow) is refused.
        """
        vm = st.vm(vm_name)
        if mac_address:
            mac = mac_address.replace(":", "").upper()
            if len(mac) != 12 or any(c not in "0123456789ABCDEF" for c in mac):
                raise refuse(f"invalid MAC address {mac_address!r}")
        else:
            mac = st.next_dynamic_mac()
        st.add_nic(vm, nic_name, mac)

    @oswin_call(mutates=True)
    def destroy_nic(self, st: HostState, vm_name, nic_name):
        """Destroy the NIC (found by name; vm_name is ignored as in os-win).
        A missing NIC is ignored."""
        found = st.find_nic(nic_name)
        if found is not None:
            _, vm, _ = found
            real = st.nic_key(vm, nic_name) or nic_name
            del vm["nics"][real]
            st.boot_order_remove(vm, NETWORK_BOOT_PREFIX + real)

    @oswin_call(mutates=False)
    def get_vm_nic_names(self, st: HostState, vm_name):
        return list(st.vm(vm_name)["nics"])

    # -- firmware ---------------------------------------------------------------

    @oswin_call(mutates=True)
    def enable_secure_boot(self, st: HostState, vm_name, msft_ca_required):
        """Enable Secure Boot, with the Microsoft UEFI Certificate Authority
        template when ``msft_ca_required`` (Linux guests) and the Microsoft
        Windows template otherwise (os-win's VMUtils10). Gen1 VMs have no
        UEFI and a running VM's firmware settings are fixed: both refused."""
        vm = st.vm(vm_name)
        if vm["generation"] != constants.VM_GEN_2:
            raise refuse(f"VM {vm_name!r} is generation 1: Secure Boot needs UEFI (Gen2)")
        if disks.is_on(vm):
            raise refuse_while_on(f"VM {vm_name!r} is running: firmware settings change only "
                          f"while it is off")
        vm["secure_boot"] = True
        vm["secure_boot_template"] = SECURE_BOOT_LINUX if msft_ca_required \
            else SECURE_BOOT_WINDOWS


def new_vm_record(gen: int, instance_path: str, notes: list[str] | None
                  ) -> dict[str, Any]:
    """A VM as DefineSystem leaves it: off, 512 MB, 1 vCPU, Gen1 with IDE 0/1."""
    vm: dict[str, Any] = {
        "id": str(uuid.uuid4()), "notes": None if notes is None else list(notes),
        "generation": gen, "memory_mb": _DEFAULT_MEMORY_MB, "vcpus": 1,
        "memory_per_numa_node": None, "state": DISABLED, "started_at": None,
        "config_root": instance_path, "soft_shutdown": "clean",
        "boot_order": list(GEN1_DEFAULT_BOOT_ORDER)
        if gen == constants.VM_GEN_1 else [],
        "controllers": [], "nics": {}, "checkpoints": []}
    if gen == constants.VM_GEN_2:
        # os-win's create_vm sets SecureBootEnabled = False; the template
        # stays Hyper-V's default until enable_secure_boot picks one.
        vm.update(secure_boot=False, secure_boot_template=SECURE_BOOT_WINDOWS)
    if gen == constants.VM_GEN_1:
        disks.add_controller(vm, constants.CTRL_TYPE_IDE, 0)
        disks.add_controller(vm, constants.CTRL_TYPE_IDE, 1)
    return vm
