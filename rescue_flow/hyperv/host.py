"""The domain operations the flows need from a Hyper-V host.

Every operation is safe to repeat (a resumed flow re-runs the step that was
interrupted, and a revert may run twice): each one checks the host first and
does only what is still missing. os-win's own calls are not always safe:
``detach_vm_disk`` ignores its VM argument and detaches the disk from
whichever VM holds it, so every detach here checks the owner first.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from rescue_flow import exceptions as rf_exc
from rescue_flow import records
from rescue_flow.hyperv.calls import OsWinCaller
from rescue_flow.hyperv.oswin import constants
from rescue_flow.hyperv.reader import HostReader

LOG = logging.getLogger(__name__)

DRIVE_TYPES = {records.DRIVE_DISK: constants.DISK, records.DRIVE_DVD: constants.DVD}

# os-win's BOOT_DEVICE_* values, hard disk first: how a Gen1 rescue VM boots.
GEN1_DISK_FIRST = (constants.BOOT_DEVICE_HARDDISK, constants.BOOT_DEVICE_CDROM,
                   constants.BOOT_DEVICE_NETWORK, constants.BOOT_DEVICE_FLOPPY)


class HyperVHost(HostReader):
    """Idempotent Hyper-V operations on one host, in the project's own terms."""

    def __init__(self, utils: dict[str, Any], caller: OsWinCaller, instances_path: str,
                 vswitch_names: list[str], soft_shutdown_timeout: float,
                 poll_interval: float, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(utils, caller, instances_path, vswitch_names)
        self.soft_shutdown_timeout = soft_shutdown_timeout
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock

    def until_done(self, action: Callable[[], None]) -> None:
        """Run ``action`` until it succeeds, ``[retry] attempts`` times at most,
        whatever it raises but a transient error, already retried by the
        call (then the last error): for irreversible steps."""
        for attempt in self._call.policy.until_done():
            with attempt:
                action()

    def _change_once(self, method: str, change: Callable[[], Any],
                     done: Callable[[], bool]) -> None:
        """Run ``change``, the os-win call ``method``, which is not safe to
        make twice (calls.LOOK_BEFORE_RETRY_METHODS); after a transient
        failure, make it again only when ``done()`` shows the first did not
        do it. As many tries as the call would get otherwise."""
        policy = self._call.policy
        for attempt in policy.on_transient(policy.attempts_for(method)):
            with attempt:
                if attempt.retry_state.attempt_number > 1 and done():
                    return
                change()

    # Power -------------------------------------------------------------

    def stop_vm(self, vm_name: str, soft_timeout: float | None = None,
                known_state: str | None = None) -> str:
        """Shut the guest down cleanly, or power off hard after the timeout
        (``soft_timeout`` seconds, by default the host's ``soft_shutdown_timeout``).

        ``known_state``: the power state the caller read a moment ago, not
        read again. Were it stale (a resumed step, the VM off already), the
        shutdown finds the VM off and the power-off is a no-op: same end.

        Returns how it ended: ``"already-off"``, ``"soft"`` or ``"hard"``.
        """
        state = self.power_state(vm_name) if known_state is None else known_state
        if state == records.POWER_OFF:
            return "already-off"
        timeout = self.soft_shutdown_timeout if soft_timeout is None else soft_timeout
        if timeout > 0 and self._soft_shutdown(vm_name, timeout):
            return "soft"
        self.power_off(vm_name)
        return "hard"

    def _soft_shutdown(self, vm_name: str, timeout: float) -> bool:
        try:
            self._call(self._vm, "soft_shutdown_vm", vm_name)
        except rf_exc.HyperVError as exc:
            # Expected while a guest boots or lacks integration services.
            LOG.info("Soft shutdown of %s was refused (%s); powering off", vm_name, exc)
            return False
        deadline = self._clock() + timeout
        while True:
            if self.power_state(vm_name) == records.POWER_OFF:
                return True
            if self._clock() >= deadline:
                LOG.info("%s did not shut down within %ss; powering off", vm_name, timeout)
                return False
            self._sleep(self._poll_interval)

    def power_off(self, vm_name: str) -> None:
        self._call(self._vm, "set_vm_state", vm_name,
                   constants.HYPERV_VM_STATE_DISABLED)

    def start_vm(self, vm_name: str) -> None:
        self._call(self._vm, "set_vm_state", vm_name, constants.HYPERV_VM_STATE_ENABLED)

    def set_power_state(self, vm_name: str, power_state: str) -> None:
        """Bring the VM back to a recorded ``running`` or ``off`` state."""
        if power_state == records.POWER_RUNNING:
            self.start_vm(vm_name)
        elif power_state == records.POWER_OFF:
            self.power_off(vm_name)
        else:
            raise rf_exc.PermanentHyperVError(
                "set_power_state", f"cannot restore power state {power_state!r}")

    # Files -------------------------------------------------------------

    def create_differencing_disk(self, path: str, parent: str) -> None:
        """Create ``path`` on ``parent``; one there already on that parent (a
        resumed step) is fine. virtdisk refuses to create over a file, so the
        file is looked at only when the create is refused."""
        try:
            self._call(self._vhd, "create_differencing_vhd", path, parent)
        except rf_exc.HyperVError:
            if not self.file_exists(path):
                raise
            existing_parent = self.disk_parent(path)
            if (existing_parent or "").lower() != parent.lower():
                raise rf_exc.PermanentHyperVError(
                    "create_differencing_vhd",
                    f"{path} exists with parent {existing_parent}, not {parent}") from None

    def delete_file(self, path: str) -> None:
        """Remove ``path``; a file already gone is fine. No ``exists`` first:
        os-win's ``exists`` (os.path.exists) answers False when Windows fails
        to look, which would leave the file behind."""
        with contextlib.suppress(rf_exc.HyperVObjectNotFound):
            self._call(self._path, "remove", path)

    # VMs ---------------------------------------------------------------

    def create_vm(self, vm_name: str, generation: int, memory_mb: int, vcpus: int,
                  config_dir: str, notes: list[str]) -> None:
        """Create a VM with one SCSI controller; completes a half-created one.

        The existence check stays: Hyper-V would create a second VM of the
        same name. A VM made here has no SCSI controller yet (os-win's
        create_vm adds none), so only a half-created one is asked for it.
        """
        created = not self.vm_exists(vm_name)
        if created:
            self._change_once(
                "create_vm",
                lambda: self._call(self._vm, "create_vm", vm_name, False, generation,
                                   config_dir, notes=notes),
                done=lambda: self.vm_exists(vm_name))
        self._call(self._vm, "update_vm", vm_name, memory_mb, 0, vcpus, 0, False, 1.0)
        if created or self._scsi_controller(vm_name) is None:
            self._change_once(
                "create_scsi_controller",
                lambda: self._call(self._vm, "create_scsi_controller", vm_name),
                done=lambda: self._scsi_controller(vm_name) is not None)

    def _scsi_controller(self, vm_name: str) -> Any:
        return self._call(self._vm, "get_vm_scsi_controller", vm_name)

    def enable_secure_boot(self, vm_name: str, msft_ca_required: bool) -> None:
        """Secure Boot on, with the Microsoft UEFI CA template for non-Windows
        guests; setting it again is harmless, so no check first."""
        self._call(self._vm, "enable_secure_boot", vm_name, msft_ca_required)

    def destroy_vm(self, vm_name: str) -> None:
        """Remove the VM (never its disk files); nothing to do when it is gone."""
        if self.vm_exists(vm_name):
            self._change_once("destroy_vm",
                              lambda: self._call(self._vm, "destroy_vm", vm_name),
                              done=lambda: not self.vm_exists(vm_name))

    # Disks -------------------------------------------------------------

    def _controller_path(self, vm_name: str, controller_type: str, addr: int) -> str:
        if controller_type == records.CTRL_IDE:
            path = self._call(self._vm, "get_vm_ide_controller", vm_name, addr)
        elif addr == 0:
            path = self._call(self._vm, "get_vm_scsi_controller", vm_name)
        else:
            # os-win exposes only a VM's first SCSI controller.
            raise rf_exc.PermanentHyperVError(
                "attach_drive", f"SCSI controller {addr} of {vm_name} is out of reach")
        if not path:
            raise rf_exc.HyperVObjectNotFound(
                "attach_drive", f"{vm_name} has no {controller_type} controller {addr}")
        return str(path)

    def attach_disk(self, vm_name: str, disk: records.DiskAttachment,
                    controller: str | None = None) -> str:
        """Attach ``disk`` at exactly its controller and slot; return the
        controller's path, so the next attach to it need not look it up
        again (``controller``: that path, already known).

        Attached already (a resumed or repeated step) shows as a refused
        attach: only then is the VM's storage read, to tell that from a real
        refusal. (On Windows os-win first retries the refused job for about
        five seconds: a price paid on a resume only, not on every attach.)
        """
        if controller is None:
            controller = self._controller_path(vm_name, disk.controller_type,
                                               disk.controller_addr)
        try:
            self._call(self._vm, "attach_drive", vm_name, disk.path, controller,
                       disk.slot, drive_type=DRIVE_TYPES[disk.drive_type])
        except rf_exc.HyperVError:
            if not self.disk_attached_to(vm_name, disk.path):
                raise
        return controller

    def detach_disk(self, vm_name: str, path: str) -> None:
        """Detach ``path`` from ``vm_name`` only; a disk held elsewhere stays."""
        if self.disk_attached_to(vm_name, path):
            self.detach_held_disk(vm_name, path)

    def detach_held_disk(self, vm_name: str, path: str) -> None:
        """Detach ``path``, which the caller knows is on ``vm_name`` or on no
        VM at all (then os-win does nothing): no look at the owner first."""
        self._call(self._vm, "detach_vm_disk", vm_name, path, is_physical=False)

    def set_boot_order(self, vm_name: str, generation: int,
                       boot_order: tuple[Any, ...]) -> None:
        if boot_order:
            self._call(self._vm, "set_boot_order", vm_name, list(boot_order))

    def boot_from_disk(self, vm_name: str, generation: int, path: str) -> None:
        """Make the VM boot from ``path`` first (Gen1: hard disk = IDE 0:0)."""
        if generation == records.GEN1:
            self._call(self._vm, "set_boot_order", vm_name, list(GEN1_DISK_FIRST))
        else:
            self._call(self._vm, "set_boot_order", vm_name, [path])

    # NICs --------------------------------------------------------------

    def add_nic(self, vm_name: str, nic: records.Nic) -> None:
        if nic.name not in self._nic_names(vm_name):
            self._change_once(
                "create_nic",
                lambda: self._call(self._vm, "create_nic", vm_name, nic.name, nic.mac),
                done=lambda: nic.name in self._nic_names(vm_name))
        if nic.switch:
            self._call(self._net, "connect_vnic_to_vswitch", nic.switch, nic.name)

    def remove_nic(self, vm_name: str, nic_name: str) -> None:
        if self.vm_exists(vm_name) and nic_name in self._nic_names(vm_name):
            self._call(self._vm, "destroy_nic", vm_name, nic_name)

    def _nic_names(self, vm_name: str) -> list[str]:
        return list(self._call(self._vm, "get_vm_nic_names", vm_name))
