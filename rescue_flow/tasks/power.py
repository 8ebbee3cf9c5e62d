"""Power steps: stop and start the instance and the rescue VM."""

from __future__ import annotations

from typing import Any

from rescue_flow import exceptions, records
from rescue_flow.tasks.base import HostTask, config


class StopInstance(HostTask):
    """Shut the instance down (soft, then hard); revert restores its power state.

    ``shutdown_timeout`` is Nova's for this instance when its driver asked
    (None: the host's [hyperv] soft_shutdown_timeout).
    """

    def execute(self, instance_vm: str, original: dict[str, Any],
                shutdown_timeout: int | None = None) -> str:
        # Validation read the power state a moment ago, with nothing changed since.
        return self.host.stop_vm(instance_vm, shutdown_timeout,
                                 known_state=config(original).power_state)

    def revert(self, instance_vm: str, original: dict[str, Any], **kwargs: Any) -> None:
        self.host.set_power_state(instance_vm, config(original).power_state)


class StartRescueVM(HostTask):
    """Boot the rescue VM; revert powers it off."""

    def execute(self, rescue_vm: str) -> None:
        self.host.start_vm(rescue_vm)

    def revert(self, rescue_vm: str, **kwargs: Any) -> None:
        if self.host.vm_exists(rescue_vm):
            self.host.power_off(rescue_vm)


class StopRescueVM(HostTask):
    """Shut the rescue VM down so the guest flushes the root disk; revert restarts it."""

    def execute(self, rescue_vm: str, rescue_vm_power: str) -> str:
        # Validation read the power state a moment ago, with nothing changed since.
        return self.host.stop_vm(rescue_vm, known_state=rescue_vm_power)

    def revert(self, rescue_vm: str, rescue_vm_power: str, **kwargs: Any) -> None:
        if rescue_vm_power in (records.POWER_RUNNING, records.POWER_OFF):
            self.host.set_power_state(rescue_vm, rescue_vm_power)


class StartInstance(HostTask):
    """Start the instance and confirm it runs; revert powers it off again."""

    def execute(self, instance_vm: str) -> None:
        self.host.start_vm(instance_vm)
        state = self.host.power_state(instance_vm)
        if state != records.POWER_RUNNING:
            raise exceptions.PermanentHyperVError(
                "start instance", f"{instance_vm} is {state} after starting it")

    def revert(self, instance_vm: str, **kwargs: Any) -> None:
        self.host.power_off(instance_vm)
