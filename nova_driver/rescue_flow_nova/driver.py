"""RescueFlowMixin: Nova's rescue and unrescue, carried out by rescue-flow.

Mix it in front of any ``nova.virt.driver.ComputeDriver``::

    class HyperVDriver(RescueFlowMixin, compute_hyperv.nova.driver.HyperVDriver):
        pass

(ready made in :mod:`rescue_flow_nova.compute_hyperv` and
:mod:`rescue_flow_nova.nova_hyperv`). What changes, and why:

- ``rescue`` / ``unrescue`` send the request to this host's rescue-flow
  worker and wait for its result (:mod:`rescue_flow_nova.link`): on success
  they return and Nova sets RESCUED / ACTIVE; on failure they raise
  :class:`RescueFlowFailed`, whose message Nova stores as the instance fault
  (the failed step and its cause first, then whether the host was restored).
- ``power_off`` during a rescue does nothing but note Nova's clean-shutdown
  timeout: the flow's own StopInstance step stops the VM with it, so a
  failed rescue reverts to the power state the VM had before Nova's request.
- While an instance is rescued, ``get_info`` and the consoles follow the
  rescue VM (``<vm name>-rescue``), ``list_instances`` leaves it out, and
  ``destroy`` unrescues through the worker first, so nothing the rescue made
  outlives the instance.
- When nova-compute starts (``init_host``) and then periodically
  (``get_available_resource``), the driver announces itself to the worker,
  which from then on leaves Nova's rescue notifications to the driver: one
  Nova action, one flow (docs/protocol.md).
"""

from __future__ import annotations

import ntpath
import time
from typing import Any

from nova import context as nova_context
from nova import exception, objects, utils
from nova.compute import power_state, task_states, vm_states
from nova.compute import utils as compute_utils
from nova.conf import CONF
from nova.virt import hardware
from oslo_log import log as logging

from rescue_flow_nova import conf as rf_conf
from rescue_flow_nova import configdrive, link, protocol

LOG = logging.getLogger(__name__)

# Hyper-V's EnabledState values (os_win.constants) as Nova's power states:
# compute-hyperv's constants.HYPERV_POWER_STATE, which the instance's own VM
# is read with, so a rescued instance reads alike (a guest shutting down is
# SHUTDOWN there, not NOSTATE).
_POWER_STATES = {2: power_state.RUNNING, 3: power_state.SHUTDOWN,
                 4: power_state.SHUTDOWN,
                 32768: power_state.PAUSED, 32769: power_state.SUSPENDED}


class RescueFlowFailed(exception.NovaException):
    """The rescue-flow worker reported a failure, or could not be reached."""

    msg_fmt = "%(reason)s"


def _same_file_key(path: str) -> str:
    """Windows compares paths ignoring case and either slash."""
    return ntpath.normcase(ntpath.normpath(path))


def _undone_by_worker(exc: Exception) -> bool:
    """The worker answered: it refused the request, or undid its flow."""
    return isinstance(exc, RescueFlowFailed) and \
        exc.kwargs.get("outcome") in ("refused", "failed")


def _nothing_left_running(exc: Exception) -> bool:
    """True when the failed call left no flow that may still use the rescue
    config drive: nothing was sent, or the worker refused or undid it (a
    quarantine leaves the host to an operator; no answer, to the worker)."""
    return _undone_by_worker(exc) or (
        isinstance(exc, RescueFlowFailed) and exc.kwargs.get("sent") is False)


class RescueVMView:
    """The instance as its rescue VM: ``name`` is the rescue VM's, the rest
    the instance's (what a Hyper-V driver's console methods look up)."""

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    @property
    def name(self) -> str:
        return protocol.rescue_vm_name(self._instance.name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._instance, attr)


class RescueFlowMixin:
    """Hands rescue and unrescue to this host's rescue-flow worker."""

    def __init__(self, virtapi: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(virtapi, *args, **kwargs)  # type: ignore[call-arg]
        rf_conf.register_opts(CONF)
        # Nova's clean-shutdown timeout for a rescue in progress, by instance.
        self._rescue_flow_shutdown: dict[str, int] = {}
        self._rescue_flow_announced: float | None = None
        self._rescue_flow_vmutils_cache: Any = None
        # nova-compute's host name, as init_host gives it (CONF.host before).
        self._rescue_flow_host: str = CONF.host

    # The line to the worker ----------------------------------------------

    def _rescue_flow_link(self, host: str | None = None) -> link.WorkerLink:
        """The line to the worker of ``host`` (this nova-compute's by default)."""
        group = CONF[rf_conf.GROUP]
        transport_url = group.transport_url or CONF.transport_url
        # TLS as nova-compute's own transport: [oslo_messaging_rabbit], ?ssl=1.
        return link.WorkerLink(link.kombu_url(CONF, transport_url), group.exchange,
                               group.requests_topic, group.results_topic,
                               host or self._rescue_flow_host,
                               ssl=link.kombu_ssl(CONF, transport_url))

    def _rescue_flow_name(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}"

    def _rescue_flow_announce(self, force: bool = False) -> None:
        valid_for = CONF[rf_conf.GROUP].announce_valid_for
        now = time.monotonic()
        if not force and self._rescue_flow_announced is not None and \
                now - self._rescue_flow_announced < valid_for / 3:
            return
        try:
            sent = self._rescue_flow_link().announce(self._rescue_flow_name(), valid_for)
        except Exception as exc:
            LOG.warning("Could not announce %s to the rescue-flow worker (will try again): "
                        "%s", self._rescue_flow_name(), exc)
            return
        if sent:
            self._rescue_flow_announced = now
            LOG.info("Announced %s to host %s's rescue-flow worker", self._rescue_flow_name(),
                     self._rescue_flow_host)
        else:
            LOG.warning("No rescue-flow worker takes host %s's requests yet; rescue and "
                        "unrescue fail until it runs", self._rescue_flow_host)

    def _rescue_flow_call(self, context: Any, instance: Any, action: str,
                          **fields: Any) -> None:
        group = CONF[rf_conf.GROUP]
        problem = rf_conf.timing_error(group)
        if problem is not None:
            raise RescueFlowFailed(reason=f"{problem}; host unchanged", sent=False)
        nova_request_id = getattr(context, "request_id", None) or \
            f"req-{instance.uuid}-{time.time():.0f}"
        host = instance.host or self._rescue_flow_host
        payload = protocol.build_request(
            action, instance.uuid, host, nova_request_id, protocol.utcnow(),
            group.timeout, group.revert_allowance, group.start_timeout, **fields)

        def on_step(step: str, state: str) -> None:
            LOG.info("rescue-flow %s: %s %s", action, step, state, instance=instance)

        try:
            result = self._rescue_flow_link(host).call(
                payload, group.timeout, {"request_id": nova_request_id}, on_step)
        except link.WorkerUnavailable as exc:
            raise RescueFlowFailed(reason=f"{exc}; host unchanged", sent=False) from exc
        except link.WorkerTimedOut as exc:
            raise RescueFlowFailed(
                reason=f"{exc}; the worker reverts at its deadline: see rescue-flow "
                f"status {instance.uuid}") from exc
        if not result.ok:
            raise RescueFlowFailed(reason=result.fault(), outcome=result.outcome)
        LOG.info("rescue-flow %s: %s", action, result.outcome, instance=instance)

    # Nova's calls ---------------------------------------------------------

    def init_host(self, host: str) -> None:
        super().init_host(host)  # type: ignore[misc]
        self._rescue_flow_host = host
        group = CONF[rf_conf.GROUP]
        problem = rf_conf.timing_error(group)
        if problem is not None:
            # Not fatal: nova-compute runs every other instance; each rescue
            # and unrescue fails with this line until it is fixed.
            LOG.error("rescue and unrescue will fail: %s", problem)
        warning = rf_conf.shutdown_warning(group, CONF.shutdown_timeout)
        if warning is not None:
            LOG.warning("%s", warning)
        self._rescue_flow_announce(force=True)
        # In the background: nova-compute's start must not wait for flows.
        utils.spawn_n(self._rescue_flow_settle_interrupted, host)

    def _rescue_flow_settle_interrupted(self, host: str) -> None:
        """Finish the rescues and unrescues a nova-compute restart cut short.

        Nova leaves such an instance in task_state rescuing / unrescuing
        forever. The request the old process sent may have finished, may
        still run, or may have been refused at its deadline: the same action
        is asked again under a new request id. The worker runs it after
        whatever still runs for the instance, and reads the host: an action
        already done is "nothing to do"; one that was undone runs again (a
        rescue then boots the instance's own image: which rescue image Nova
        had chosen died with the old process). Nova's state is then set from
        the outcome: RESCUED / ACTIVE, or ERROR with the fault.
        """
        context = nova_context.get_admin_context()
        try:
            instances = objects.InstanceList.get_by_filters(
                context, {"host": host, "deleted": False,
                          "task_state": [task_states.RESCUING, task_states.UNRESCUING]})
        except Exception:
            LOG.exception("Could not list this host's interrupted rescues")
            return
        for instance in instances:
            try:
                self._rescue_flow_settle(context, instance)
            except Exception:
                LOG.exception("Could not settle the interrupted %s", instance.task_state,
                              instance=instance)

    def _rescue_flow_settle(self, context: Any, instance: Any) -> None:
        interrupted = instance.task_state
        rescue = interrupted == task_states.RESCUING
        LOG.warning("nova-compute restarted during %s: asking rescue-flow to finish it",
                    interrupted, instance=instance)
        answered = True  # the worker ran the request asked again, after the old one
        try:
            if rescue:
                self._rescue_flow_call(context, instance, protocol.RESCUE,
                                       shutdown_timeout=CONF.shutdown_timeout)
            else:
                self._rescue_flow_call(context, instance, protocol.UNRESCUE)
            instance.vm_state = vm_states.RESCUED if rescue else vm_states.ACTIVE
        except Exception as exc:
            instance.vm_state = vm_states.ERROR
            compute_utils.add_instance_fault_from_exc(context, instance, exc)
            # Not when nothing was sent (the worker may not have started yet:
            # the old request may still be queued, and need its drive), nor
            # after a quarantine or no answer.
            answered = _undone_by_worker(exc)
        try:
            instance.power_state = self.get_info(instance).state
        except Exception as exc:
            LOG.warning("Could not read the power state after settling: %s", exc,
                        instance=instance)
        if rescue and answered:
            # Before the save: task_state still holds off a new rescue,
            # whose own new drive this must not take for a stray.
            try:
                self._rescue_flow_drop_stray_drive(instance)
            except Exception as exc:  # tidying: never in the way of Nova's state
                LOG.warning("Could not look for a stray rescue config drive: %s", exc,
                            instance=instance)
        instance.task_state = None
        instance.save(expected_task_state=[interrupted])
        LOG.info("Settled the interrupted %s: vm_state %s", interrupted, instance.vm_state,
                 instance=instance)

    def _rescue_flow_drop_stray_drive(self, instance: Any) -> None:
        """Delete the rescue config drive the old process wrote, unless the
        rescue VM holds it.

        The request asked again has no drive (the password died with the
        old process), so nothing else would remove the old one when its
        request was refused or undone: a file holding a password would stay
        in the instance's folder. The worker answered the new request, and
        it runs an instance's requests in the order they came (the old one
        first), so no flow owns the file now. (A request whose job stopped
        short of an answer, which the worker takes up again only at its next
        start, is the exception: it would find its drive gone and revert.)
        """
        vmutils = self._rescue_flow_vmutils()
        if vmutils is None:
            return
        rescue_vm = protocol.rescue_vm_name(instance.name)
        held: set[str] = set()
        if vmutils.vm_exists(rescue_vm):
            disks, _volumes = vmutils.get_vm_storage_paths(rescue_vm)
            held = {_same_file_key(path) for path in disks}
        for path in configdrive.drive_paths(instance):
            if _same_file_key(path) not in held:
                self._rescue_flow_remove_file(path)

    def get_available_resource(self, nodename: str) -> Any:
        # Nova's periodic resource update: the announcement rides on it.
        self._rescue_flow_announce()
        return super().get_available_resource(nodename)  # type: ignore[misc]

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        if instance.task_state == task_states.RESCUING:
            self._rescue_flow_shutdown[instance.uuid] = timeout
            LOG.info("Power-off left to rescue-flow's StopInstance step (clean shutdown "
                     "%ss)", timeout, instance=instance)
            return
        super().power_off(instance, timeout, retry_interval)  # type: ignore[misc]

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str, block_device_info: Any) -> None:
        props = image_meta.properties
        shutdown_timeout = self._rescue_flow_shutdown.pop(instance.uuid, None)
        try:
            drive = configdrive.build(instance, network_info, rescue_password,
                                      self._rescue_flow_place_file)
        except Exception as exc:
            # Not the exception's text alone: it cannot hold the password
            # (the builder's errors name files and commands), but say where.
            LOG.error("Could not build the rescue config drive: %s", exc, instance=instance)
            raise RescueFlowFailed(
                reason=f"could not build the rescue config drive "
                f"({CONF.config_drive_format}): {exc}; host unchanged") from exc
        try:
            self._rescue_flow_call(
                context, instance, protocol.RESCUE,
                image_id=image_meta.id if image_meta.obj_attr_is_set("id") else None,
                image_generation=protocol.generation_of(props.get("hw_machine_type")),
                shutdown_timeout=shutdown_timeout,
                image_os_secure_boot=props.get("os_secure_boot"),
                image_os_type=props.get("os_type"), config_drive=drive)
        except RescueFlowFailed as exc:
            # Refused or failed (reverted), or never sent: no VM holds the
            # drive, and the password must not stay on disk. Quarantined
            # (the host is left for an operator) or no answer (the worker
            # may still take the request and own the file): left alone.
            if _nothing_left_running(exc):
                self._rescue_flow_remove_file(drive["path"])
            raise

    # Files on this host: nova-compute and Hyper-V share its disks (tests
    # put them on the simulated host instead).

    def _rescue_flow_place_file(self, built: str, destination: str) -> None:
        configdrive.place_on_this_host(built, destination)

    def _rescue_flow_remove_file(self, path: str) -> None:
        try:
            configdrive.remove_from_this_host(path)
        except OSError as exc:
            LOG.warning("Could not delete the rescue config drive %s: %s", path, exc)

    def unrescue(self, context: Any, instance: Any) -> None:
        self._rescue_flow_call(context, instance, protocol.UNRESCUE)

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        if self._rescue_vm_power_state(instance) is not None:
            # The instance's root disk sits on the rescue VM: give it back
            # through the worker (the rescue VM and disk go with it).
            LOG.info("Unrescuing before destroying the instance", instance=instance)
            self._rescue_flow_call(context, instance, protocol.UNRESCUE)
        super().destroy(context, instance, network_info,  # type: ignore[misc]
                        block_device_info, destroy_disks, destroy_secrets)

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        if instance.vm_state == vm_states.RESCUED or \
                instance.task_state in (task_states.RESCUING, task_states.UNRESCUING):
            state = self._rescue_vm_power_state(instance)
            if state is not None:
                return hardware.InstanceInfo(state=state)
        return super().get_info(instance, use_cache)  # type: ignore[misc]

    def get_console_output(self, context: Any, instance: Any) -> Any:
        return super().get_console_output(  # type: ignore[misc]
            context, self._console_target(instance))

    def get_serial_console(self, context: Any, instance: Any) -> Any:
        return super().get_serial_console(  # type: ignore[misc]
            context, self._console_target(instance))

    def get_rdp_console(self, context: Any, instance: Any) -> Any:
        return super().get_rdp_console(  # type: ignore[misc]
            context, self._console_target(instance))

    def list_instances(self) -> list[str]:
        names = super().list_instances()  # type: ignore[misc]
        present = set(names)
        return [name for name in names
                if not (name.endswith(protocol.RESCUE_VM_SUFFIX) and
                        name[:-len(protocol.RESCUE_VM_SUFFIX)] in present)]

    def list_instance_uuids(self) -> list[str]:
        # A rescue VM's notes start with rescue-flow's marker, not a uuid,
        # so Hyper-V drivers skip it; keep each uuid once all the same.
        return list(dict.fromkeys(super().list_instance_uuids()))  # type: ignore[misc]

    # The host's view of the rescue VM ---------------------------------------

    def _console_target(self, instance: Any) -> Any:
        if instance.vm_state == vm_states.RESCUED and \
                self._rescue_vm_power_state(instance) is not None:
            return RescueVMView(instance)
        return instance

    def _rescue_flow_vmutils(self) -> Any:
        """os-win's VMUtils of this host: the Hyper-V driver's own, else a new
        one; None where there is no Hyper-V (then only Nova's view is used)."""
        if self._rescue_flow_vmutils_cache is None:
            utils = getattr(getattr(self, "_vmops", None), "_vmutils", None)
            if utils is None:
                try:
                    from os_win import utilsfactory

                    utils = utilsfactory.get_vmutils()
                except Exception as exc:  # no WMI: not a Hyper-V host
                    LOG.debug("No os-win VMUtils here (%s)", exc)
                    return None
            self._rescue_flow_vmutils_cache = utils
        return self._rescue_flow_vmutils_cache

    def _rescue_vm_power_state(self, instance: Any) -> int | None:
        """Nova's power state of the instance's rescue VM; None if it has none."""
        vmutils = self._rescue_flow_vmutils()
        if vmutils is None:
            return None
        name = protocol.rescue_vm_name(instance.name)
        if not vmutils.vm_exists(name):
            return None
        summary = vmutils.get_vm_summary_info(name)
        return _POWER_STATES.get(summary.get("EnabledState"), power_state.NOSTATE)
