"""Every os-win call goes through :class:`OsWinCaller`: logged, retried, translated.

Retries follow ``[retry]``: a bounded number of attempts with exponential
backoff, for transient errors only. os-win already retries some calls itself
(five tries, one second apart: power state changes and every call that adds,
modifies or removes a VM resource, file removal and rename); for those we
make fewer attempts of our own, so the two layers do not multiply into
minutes of waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import tenacity

from rescue_flow import exceptions as rf_exc
from rescue_flow.hyperv import errors

LOG = logging.getLogger(__name__)

# Methods whose os-win implementation retries internally (read from os-win
# 5.9.0: set_vm_state's own decorator; _modify_virtual_system and jobutils'
# add/modify/remove_virt_resource; pathutils' file_in_use_retry_decorator).
OSWIN_RETRIED_METHODS = frozenset({
    "set_vm_state",
    "update_vm",
    "set_boot_order",
    "create_scsi_controller",
    "attach_drive",
    "attach_ide_drive",
    "attach_scsi_drive",
    "attach_volume_to_controller",
    "detach_vm_disk",
    "create_nic",
    "destroy_nic",
    "connect_vnic_to_vswitch",
    "remove",
    "rename",
    "rmtree",
})


# Methods that are not safe to call twice: Hyper-V makes a second VM, NIC or
# SCSI controller (names need not be unique), or fails to destroy a VM that
# is gone (os-win's destroy_nic ignores a NIC that is gone). Their
# transient failure may come after Hyper-V did the job (the WMI connection
# dropped once it ran), so they are not called again blindly here: the
# host's operation looks first (HyperVHost._change_once).
LOOK_BEFORE_RETRY_METHODS = frozenset({"create_vm", "create_nic", "create_scsi_controller",
                                       "destroy_vm"})


class RetryPolicy:
    """How many attempts a call gets, and how long to wait between them."""

    def __init__(self, attempts: int, attempts_for_oswin_retried: int,
                 initial_backoff: float, max_backoff: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.attempts = attempts
        self.attempts_for_oswin_retried = attempts_for_oswin_retried
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.sleep = sleep

    @classmethod
    def from_conf(cls, conf: Any) -> RetryPolicy:
        return cls(conf.retry.attempts, conf.retry.attempts_for_oswin_retried_calls,
                   conf.retry.initial_backoff, conf.retry.max_backoff)

    def attempts_for(self, method: str) -> int:
        """Tries ``method`` gets (LOOK_BEFORE_RETRY_METHODS: by the caller that
        looks before each retry; a plain call makes one)."""
        if method in OSWIN_RETRIED_METHODS:
            return self.attempts_for_oswin_retried
        return self.attempts

    def retrying(self, method: str) -> tenacity.Retrying:
        if method in LOOK_BEFORE_RETRY_METHODS:
            return self.on_transient(1)
        return self.on_transient(self.attempts_for(method))

    def on_transient(self, attempts: int) -> tenacity.Retrying:
        """``attempts`` tries, again only after a transient error."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=self.initial_backoff,
                                           max=self.max_backoff),
            retry=tenacity.retry_if_exception_type(rf_exc.TransientHyperVError),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )


    def until_done(self) -> tenacity.Retrying:
        """Retry any error but a transient one, ``attempts`` times: for steps
        that cannot be reverted. A transient error reaching here has had its
        retries in the call already; retrying it again would multiply them
        (``attempts`` squared calls, minutes of backoff)."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.initial_backoff,
                                           max=self.max_backoff),
            retry=tenacity.retry_if_not_exception_type(rf_exc.TransientHyperVError),
            sleep=self.sleep, before_sleep=_log_cleanup_retry, reraise=True)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    LOG.warning("Retrying after a transient Hyper-V error (attempt %d): %s",
                state.attempt_number, exc)


def _log_cleanup_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    LOG.warning("Retrying a clean-up step that cannot be reverted (attempt %d): %s",
                state.attempt_number, exc)


class OsWinCaller:
    """Calls methods of os-win utility objects with logging, retries and translation."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    def __call__(self, utils: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(utils, method)
        for attempt in self._policy.retrying(method):
            with attempt:
                LOG.debug("os-win %s.%s args=%r kwargs=%r",
                          type(utils).__name__, method, args, kwargs)
                try:
                    return function(*args, **kwargs)
                except Exception as exc:
                    if not errors.is_oswin_error(exc):
                        raise
                    raise errors.translate(method, exc) from exc
        raise AssertionError("unreachable: tenacity reraises the last error")
