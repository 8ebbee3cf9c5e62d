"""Handle one request: check quarantine, read the host, decide, run the flow.

The same code serves ``rescue-flow run`` (in the foreground) and the worker.
A failed flow is reverted by TaskFlow; a revert that fails quarantines the
instance. The result says what happened in the words an operator needs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import taskflow.engines
from taskflow import states as tf_states

from rescue_flow import exceptions, observe, requests, states
from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.locks import instance_lock
from rescue_flow.outcome import Outcome, Result
from rescue_flow.progress import StepCallback, StepRecorder
from rescue_flow.quarantine import QuarantineList

LOG = logging.getLogger(__name__)

_LEFTOVER_KEYS = ("rescue_vm_leftover", "rescue_disk_leftover")


class FlowRunner:
    def __init__(self, host: HyperVHost, quarantine: QuarantineList, host_name: str,
                 lock_dir: str) -> None:
        self.host = host
        self.quarantine = quarantine
        self.host_name = host_name
        self.lock_dir = lock_dir

    @classmethod
    def from_conf(cls, conf: Any, host: HyperVHost) -> FlowRunner:
        return cls(host, QuarantineList.from_conf(conf), conf.host,
                   os.path.join(conf.state_path, "locks"))

    def _result(self, request: requests.Request, outcome: Outcome,
                **fields: Any) -> Result:
        return Result(request_id=request.request_id, action=request.action,
                      instance_uuid=request.instance_uuid, host=self.host_name,
                      outcome=outcome, **fields)

    def handle(self, request: requests.Request,
               on_step: StepCallback | None = None) -> Result:
        entry = self.quarantine.get(request.instance_uuid)
        if entry is not None:
            error = exceptions.InstanceQuarantined(request.instance_uuid, entry["reason"])
            return self._result(request, Outcome.QUARANTINED, reason=str(error))
        with instance_lock(self.lock_dir, request.instance_uuid):
            return self._handle_locked(request, on_step)

    def _handle_locked(self, request: requests.Request,
                       on_step: StepCallback | None) -> Result:
        try:
            seen = observe.observe(self.host, request.instance_uuid)
        except exceptions.RescueFlowError as exc:
            outcome = (Outcome.REFUSED if isinstance(exc, exceptions.ValidationError)
                       else Outcome.FAILED)
            return self._result(request, outcome, reason=str(exc))
        decision = states.decide(seen.state, request.action)
        if decision is states.Decision.CLEAN_UP_FIRST:
            cleaned = self._run_flow("cleanup", request, seen, on_step)
            if request.action == requests.UNRESCUE or cleaned.leftovers or \
                    not cleaned.outcome.ok:
                return cleaned
            seen = observe.observe(self.host, request.instance_uuid)
            decision = states.decide(seen.state, request.action)
        if decision is states.Decision.NOTHING_TO_DO:
            return self._result(request, Outcome.NOTHING_TO_DO,
                                reason=states.NOTHING_TO_DO_REASONS[request.action])
        if decision is not states.Decision.RUN:
            return self._result(request, Outcome.REFUSED,
                                reason=f"instance is {seen.state}; cannot {request.action}")
        return self._run_flow(request.action, request, seen, on_step)

    def _flow_and_store(self, kind: str, request: requests.Request,
                        seen: observe.Observation) -> tuple[Any, dict[str, Any], str]:
        if kind == requests.RESCUE:
            return get_rescue_flow(self.host), {
                "instance_uuid": request.instance_uuid, "image_id": request.image_id,
                "image_generation": request.image_generation,
                "request_id": request.request_id}, states.START_RESCUE
        if kind == requests.UNRESCUE:
            return get_unrescue_flow(self.host), {
                "instance_uuid": request.instance_uuid,
                "request_id": request.request_id}, states.START_UNRESCUE
        rescue_vm = seen.rescue_vm
        record = rescue_vm.record if rescue_vm else None
        return get_cleanup_flow(self.host), {
            "instance_vm": seen.instance_vm,
            "original": record.to_dict() if record else None,
            "rescue_vm": rescue_vm.name if rescue_vm else None,
            "rescue_disk": seen.leftover_files[0] if seen.leftover_files else None,
        }, states.START_CLEANUP

    def _run_flow(self, kind: str, request: requests.Request, seen: observe.Observation,
                  on_step: StepCallback | None) -> Result:
        flow, store, start_event = self._flow_and_store(kind, request, seen)
        lifecycle = states.InstanceLifecycle(seen.state)
        lifecycle.fire(start_event)
        engine = taskflow.engines.load(flow, store=store, engine="serial")
        recorder = StepRecorder(flow.name, on_step)
        recorder.attach(engine)
        LOG.info("Running %s for instance %s (request %s)", flow.name,
                 request.instance_uuid, request.request_id)
        try:
            engine.run()
        except Exception as exc:
            return self._failed(request, engine, recorder, lifecycle, exc)
        leftovers = [str(engine.storage.fetch(key)) for key in _LEFTOVER_KEYS
                     if _fetch_optional(engine, key)]
        lifecycle.fire(states.SUCCEEDED_WITH_LEFTOVERS if leftovers else states.SUCCEEDED)
        return self._result(request, Outcome.SUCCESS, step_durations=recorder.durations,
                            leftovers=leftovers,
                            reason="finished; left for a later unrescue: "
                            + "; ".join(leftovers) if leftovers else None)

    def _failed(self, request: requests.Request, engine: Any, recorder: StepRecorder,
                lifecycle: states.InstanceLifecycle, exc: Exception) -> Result:
        common = {"failed_step": recorder.failed_step,
                  "reverted_steps": list(recorder.reverted),
                  "step_durations": recorder.durations}
        if engine.storage.get_flow_state() != tf_states.REVERTED:
            reason = (f"{recorder.failed_step} failed: {_first_failure(engine, exc)}; "
                      f"then reverting {recorder.revert_failed} failed: {exc}")
            self.quarantine.add(request.instance_uuid, reason, request.request_id)
            lifecycle.fire(states.REVERT_FAILED)
            LOG.error("Instance %s quarantined: %s", request.instance_uuid, reason)
            return self._result(request, Outcome.QUARANTINED, reason=reason, **common)
        lifecycle.fire(states.REVERTED)
        refused = isinstance(exc, (exceptions.ValidationError, exceptions.InvalidRequest))
        return self._result(request, Outcome.REFUSED if refused else Outcome.FAILED,
                            reason=f"{recorder.failed_step} failed: {exc}", **common)


def _fetch_optional(engine: Any, key: str) -> Any:
    try:
        return engine.storage.fetch(key)
    except exceptions.RescueFlowError:
        raise
    except Exception:  # taskflow's NotFound: the flow has no such result
        return None


def _first_failure(engine: Any, fallback: Exception) -> str:
    """The error that started the revert, kept in storage when a revert failed."""
    for failure in engine.storage.get_execute_failures().values():
        return str(failure.exception or failure)
    return str(fallback)
