"""Report: how a request ended, as the :class:`Result` every caller gets.

One place builds Results, so the CLI, notifications and the history read
the same words: the failed step and its cause first, then what a failed
revert left, then what was reverted.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from taskflow import states as tf_states

from rescue_flow import exceptions, requests
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import RequestRecord

LOG = logging.getLogger(__name__)


class Quarantining(Result):
    """A result whose instance goes into quarantine as it is recorded."""


class Reporter:
    """Builds the Results of one host's requests."""

    def __init__(self, host_name: str) -> None:
        self.host_name = host_name

    def result(self, request: requests.Request, outcome: Outcome, **fields: Any) -> Result:
        return Result(request_id=request.request_id, action=request.action,
                      instance_uuid=request.instance_uuid, host=self.host_name,
                      outcome=outcome, **fields)

    def duplicate(self, record: RequestRecord) -> Result:
        if record.result is not None:
            earlier = Result.from_dict(record.result)
            reason = f"already handled: {earlier.outcome.value}"
        else:
            reason = "already accepted; it runs (or resumes) once"
        return self.result(record.request, Outcome.DUPLICATE, reason=reason)

    def quarantined(self, request: requests.Request, entry: dict[str, Any]) -> Result:
        error = exceptions.InstanceQuarantined(request.instance_uuid, entry["reason"])
        return self.result(request, Outcome.QUARANTINED, reason=str(error))

    def succeeded(self, request: requests.Request, leftovers: list[str],
                  step_durations: dict[str, float] | None = None) -> Result:
        reason = ("finished; left for a later unrescue: " + "; ".join(leftovers)
                  if leftovers else None)
        return self.result(request, Outcome.SUCCESS, step_durations=step_durations or {},
                           leftovers=leftovers, reason=reason)

    def reverted(self, request: requests.Request, failed_step: str | None, cause: str,
                 first_failure: Any, **common: Any) -> Result:
        """The flow failed and every step was undone: the host is as before."""
        refused = first_failure is not None and first_failure.check(
            exceptions.ValidationError, exceptions.InvalidRequest)
        return self.result(request, Outcome.REFUSED if refused else Outcome.FAILED,
                           reason=f"{failed_step} failed: {cause}",
                           failed_step=failed_step, **common)

    def revert_failed(self, request: requests.Request, failed_step: str | None,
                      cause: str, revert_step: str | None, revert_cause: str,
                      **common: Any) -> Quarantining:
        reason = (f"{failed_step} failed: {cause}; "
                  f"then reverting {revert_step} failed: {revert_cause}")
        LOG.error("Instance %s quarantined: %s", request.instance_uuid, reason)
        return Quarantining(**dataclasses.asdict(self.result(
            request, Outcome.QUARANTINED, reason=reason, failed_step=failed_step,
            **common)))

    def recorded_end(self, request: requests.Request, detail: Any,
                     leftovers: list[str]) -> Result:
        """The result of a flow that ended, read from its record (nothing runs).

        Only a success, a complete revert or a failed revert ends here.
        """
        if detail.state == tf_states.SUCCESS:
            return self.succeeded(request, leftovers)
        failed = [atom for atom in detail if atom.failure is not None]
        revert_failed = [atom for atom in detail if atom.revert_failure is not None]
        reverted = [atom.name for atom in detail
                    if atom.state == tf_states.REVERTED and atom.results is not None]
        failed_step = failed[0].name if failed else None
        cause = failed[0].failure.exception_str if failed else "unknown"
        if detail.state == tf_states.REVERTED:
            return self.reverted(request, failed_step, cause,
                                 failed[0].failure if failed else None,
                                 reverted_steps=reverted)
        return self.revert_failed(
            request, failed_step, cause,
            revert_failed[0].name if revert_failed else None,
            revert_failed[0].revert_failure.exception_str if revert_failed else "unknown",
            reverted_steps=reverted)
