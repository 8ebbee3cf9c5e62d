"""Unrescue's last, irreversible steps: remove the rescue VM and its disk.

They run only once the instance runs again. They have no revert: undoing a
finished unrescue because a clean-up failed would take a working instance
down again. So they are retried until they hold: an error the host adapter
does not retry (a job refused once, a file in use a moment longer: they
often pass the next time) gets ``[retry] attempts`` tries with the same
backoff; a transient one has had its tries in the adapter already, and is
not tried that many times over. Only what still fails then is reported as
a leftover instead of failing the flow, and the next unrescue (or the
worker) removes it, since these steps are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rescue_flow import exceptions, layout, records
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.tasks.base import HostTask, config
from rescue_flow.tasks.disks import restore_root_on_instance

LOG = logging.getLogger(__name__)


def _leftover_unless_done(host: HyperVHost, what: str,
                          action: Callable[[], None]) -> str | None:
    """Run a clean-up action until it holds; if it never does, report ``what``
    as left over.

    Any error, not just Hyper-V's: an exception escaping here would make
    TaskFlow revert the whole unrescue and take the running instance down.
    """
    try:
        host.until_done(action)
    except Exception as exc:
        LOG.exception("Could not remove %s; a later unrescue will: %s", what, exc)
        return f"{what}: {exc}"
    return None


class DestroyRescueVM(HostTask):
    """Destroy the rescue VM (its NICs go with it); no revert."""

    stops_at_deadline = False

    default_provides = "rescue_vm_leftover"

    def execute(self, rescue_vm: str | None) -> str | None:
        if rescue_vm is None:
            return None
        return _leftover_unless_done(self.host, f"VM {rescue_vm}",
                                     lambda: self.host.destroy_vm(rescue_vm))


class DeleteRescueDisk(HostTask):
    """Delete the rescue disk once no VM uses it; no revert."""

    stops_at_deadline = False

    default_provides = "rescue_disk_leftover"

    def execute(self, rescue_disk: str | None, rescue_vm: str | None,
                rescue_vm_leftover: str | None) -> str | None:
        if rescue_disk is None:
            return None

        def delete() -> None:
            # A rescue VM that DestroyRescueVM removed holds nothing; only one
            # it left behind is asked about.
            if rescue_vm is not None and rescue_vm_leftover is not None and \
                    self.host.vm_exists(rescue_vm):
                raise exceptions.RescueFlowError(f"still attached to {rescue_vm}")
            self.host.delete_file(rescue_disk)

        return _leftover_unless_done(self.host, f"file {rescue_disk}", delete)


class DeleteRescueConfigDrive(HostTask):
    """Delete the rescue VM's config drive once the VM is gone; no revert.

    The unrescue request does not name it: ValidateUnrescue found it among
    the rescue VM's drives. None (a rescue without one): no call at all.
    """

    stops_at_deadline = False

    default_provides = "rescue_config_drive_leftover"

    def execute(self, rescue_vm: str | None,
                rescue_config_drive_path: str | None = None) -> str | None:
        return self._delete(rescue_vm,
                            [rescue_config_drive_path] if rescue_config_drive_path else [])

    def _delete(self, rescue_vm: str | None, paths: list[str]) -> str | None:
        if not paths:
            return None

        def delete() -> None:
            if rescue_vm is not None and self.host.vm_exists(rescue_vm):
                # An off VM does not hold its files: Windows would delete a
                # drive from under it.
                raise exceptions.RescueFlowError(f"still attached to {rescue_vm}")
            for path in paths:
                self.host.delete_file(path)

        return _leftover_unless_done(self.host, f"file {paths[0]}", delete)


class DeleteLeftoverRescueConfigDrive(DeleteRescueConfigDrive):
    """In the clean-up flow: delete the drive of a rescue VM left behind; no revert.

    Its unrescue could not destroy the VM, so it could not delete the drive
    either. Nothing here tells which of compute-hyperv's two names it has:
    both are removed (a file that is not there is done), except the drive
    of the rescue request that is cleaning up first (``config_drive``): the
    Nova driver has just written it for that rescue.
    """

    def execute(self, rescue_vm: str | None,  # type: ignore[override]
                original: dict[str, Any] | None = None,
                config_drive: dict[str, str] | None = None) -> str | None:
        if rescue_vm is None or original is None:
            return None
        # Compared as Windows names files (the candidates are normalized):
        # the request may spell its drive with another case or with "/".
        paths: Any = layout.path_module(self.host.instances_path)
        keep = (paths.normcase(paths.normpath(config_drive["path"]))
                if config_drive else None)
        return self._delete(rescue_vm, [
            path for path in layout.rescue_config_drive_candidates(
                self.host.instances_path, config(original).instance_dir)
            if paths.normcase(path) != keep])


class EnsureRootDiskOnInstance(HostTask):
    """Give an interrupted run's root disk back to the instance and start it; no revert.

    Only when the disk was off the instance: then a run stopped between
    moving the disk and starting the instance, and the instance goes back to
    the power state recorded before the rescue. A disk already in place means
    the instance is as an unrescue left it, and its power is not touched.
    """

    stops_at_deadline = False

    def execute(self, instance_vm: str, original: dict[str, Any] | None) -> None:
        if original is None:
            return
        record = config(original)
        if self.host.disk_attached_to(instance_vm, record.root_disk.path):
            return
        restore_root_on_instance(self, instance_vm, original)
        if record.power_state == records.POWER_RUNNING:
            self.host.start_vm(instance_vm)
