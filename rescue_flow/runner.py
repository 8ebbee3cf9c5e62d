"""Handle one request: record it, check quarantine, read the host, decide, run.

The same code serves ``rescue-flow run`` (in the foreground), ``rescue-flow
resume`` and the worker. With a history (the default everywhere but unit
tests), a request is durably recorded before anything happens, a request id
seen before is not run again, and every flow's steps are persisted so that a
flow cut short by a crash resumes where it stopped. A failed flow is reverted
by TaskFlow; a revert that fails quarantines the instance.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import taskflow.engines
from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rescue_flow import exceptions, hyperv, logs, observe, requests, states
from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.locks import instance_lock
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History, RequestRecord
from rescue_flow.progress import StepCallback, StepRecorder
from rescue_flow.quarantine import QuarantineList

LOG = logging.getLogger(__name__)

CLEANUP = "cleanup"
_FACTORIES = {requests.RESCUE: get_rescue_flow, requests.UNRESCUE: get_unrescue_flow,
              CLEANUP: get_cleanup_flow}
# Where an instance stands when a flow of each kind starts, and how it starts.
_START = {requests.RESCUE: (states.ACTIVE, states.START_RESCUE),
          requests.UNRESCUE: (states.RESCUED, states.START_UNRESCUE),
          CLEANUP: (states.LEFTOVERS, states.START_CLEANUP)}
_LEFTOVER_KEYS = ("rescue_vm_leftover", "rescue_disk_leftover")

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _logged_as_request(method: _Method) -> _Method:
    """Every log line during the call names the request and its instance."""
    @functools.wraps(method)
    def wrapper(self: Any, item: Any, *args: Any, **kwargs: Any) -> Any:
        request = item.request if isinstance(item, RequestRecord) else item
        with logs.request_context(request.request_id, request.instance_uuid):
            return method(self, item, *args, **kwargs)
    return cast(_Method, wrapper)


class FlowRunner:
    def __init__(self, host: HyperVHost, quarantine: QuarantineList, host_name: str,
                 lock_dir: str, history: History | None = None) -> None:
        self.host = host
        self.quarantine = quarantine
        self.host_name = host_name
        self.lock_dir = lock_dir
        self.history = history
        # Each kind's flow as its factory builds it, copied for every run (_flow).
        self._templates: dict[str, Any] = {}

    @classmethod
    def from_conf(cls, conf: Any, host: HyperVHost,
                  history: History | None = None) -> FlowRunner:
        return cls(host, QuarantineList.from_conf(conf), conf.host,
                   os.path.join(conf.state_path, "locks"), history)

    @classmethod
    def durable(cls, conf: Any, host: HyperVHost | None = None) -> FlowRunner:
        """The runner every command uses: the configured host, with its history."""
        return cls.from_conf(conf, host or hyperv.get_host(conf), History.from_conf(conf))

    def _result(self, request: requests.Request, outcome: Outcome,
                **fields: Any) -> Result:
        return Result(request_id=request.request_id, action=request.action,
                      instance_uuid=request.instance_uuid, host=self.host_name,
                      outcome=outcome, **fields)

    # Entry points ------------------------------------------------------

    @_logged_as_request
    def handle(self, request: requests.Request,
               on_step: StepCallback | None = None) -> Result:
        """Record the request (once per request id), then execute it."""
        if self.history is not None:
            new, record = self.history.accept(request)
            if not new:
                return self._duplicate(record)
        return self.execute(request, on_step)

    @_logged_as_request
    def execute(self, request: requests.Request,
                on_step: StepCallback | None = None) -> Result:
        """Run an accepted request to its end and record the result."""
        refused = self._quarantined(request)
        if refused is None:
            with instance_lock(self.lock_dir, request.instance_uuid):
                result = self._handle_locked(request, on_step)
        else:
            result = refused
        return self._finish(result)

    @_logged_as_request
    def resume(self, record: RequestRecord, on_step: StepCallback | None = None) -> Result:
        """Finish a request that a crash interrupted, from its last recorded step."""
        request = record.request
        refused = self._quarantined(request)
        if refused is not None:
            return self._finish(refused)
        with instance_lock(self.lock_dir, request.instance_uuid):
            interrupted = self.history.interrupted_flow(record) if self.history else None
            if interrupted is None:
                result = self._handle_locked(request, on_step)
            else:
                book, detail = interrupted
                kind = detail.meta["kind"]
                LOG.info("Resuming %s of request %s from its last recorded step",
                         kind, request.request_id)
                engine = taskflow.engines.load(
                    self._flow(kind), flow_detail=detail, book=book,
                    backend=self.history.backend if self.history else None,
                    engine="serial")
                result = self._drive(kind, request, engine, on_step)
                if kind == CLEANUP and request.action == requests.RESCUE and \
                        result.outcome is Outcome.SUCCESS and not result.leftovers:
                    result = self._handle_locked(request, on_step)
        return self._finish(result)

    def resume_unfinished(self, on_step: StepCallback | None = None) -> list[Result]:
        """Resume every request of this host that was accepted and never finished."""
        if self.history is None:
            return []
        return [self.resume(record, on_step) for record in self.history.unfinished()]

    def _flow(self, kind: str) -> Any:
        """A new flow of this kind, made of copies of tasks built once.

        Building a task inspects its execute and revert signatures: 2.3 ms
        of CPU for a rescue flow's ten (bench B1). ``Task.copy`` (TaskFlow's
        own) gives the same task, with the same name, arguments and results
        and a notifier of its own, so runs share nothing but the host, as
        before (a task keeps nothing else of its own: tasks/base.py). Only a
        flat linear flow of tasks is copied like this; any other shape is
        built by its factory every time.
        """
        template = self._templates.get(kind)
        if template is None:
            template = _FACTORIES[kind](self.host)
            if type(template) is not linear_flow.Flow or template.retry is not None or \
                    not all(isinstance(atom, tf_task.Task) for atom in template):
                return template
            template = self._templates.setdefault(kind, template)
        return linear_flow.Flow(template.name).add(
            *(atom.copy(retain_listeners=False) for atom in template))

    # Steps of handling -------------------------------------------------

    def _duplicate(self, record: RequestRecord) -> Result:
        if record.result is not None:
            earlier = Result.from_dict(record.result)
            reason = f"already handled: {earlier.outcome.value}"
        else:
            reason = "already accepted; it runs (or resumes) once"
        return self._result(record.request, Outcome.DUPLICATE, reason=reason)

    def _quarantined(self, request: requests.Request) -> Result | None:
        entry = self.quarantine.get(request.instance_uuid)
        if entry is None:
            return None
        error = exceptions.InstanceQuarantined(request.instance_uuid, entry["reason"])
        return self._result(request, Outcome.QUARANTINED, reason=str(error))

    def _finish(self, result: Result) -> Result:
        if self.history is not None:
            self.history.finish(result)
        return result

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
            cleaned = self._run_flow(CLEANUP, request, seen, on_step)
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

    def _store(self, kind: str, request: requests.Request,
               seen: observe.Observation) -> dict[str, Any]:
        if kind == requests.RESCUE:
            return {"instance_uuid": request.instance_uuid, "image_id": request.image_id,
                    "image_generation": request.image_generation,
                    "image_os_secure_boot": request.image_os_secure_boot,
                    "image_os_type": request.image_os_type,
                    "request_id": request.request_id}
        if kind == requests.UNRESCUE:
            return {"instance_uuid": request.instance_uuid,
                    "request_id": request.request_id}
        rescue_vm = seen.rescue_vm
        record = rescue_vm.record if rescue_vm else None
        return {"instance_vm": seen.instance_vm,
                "original": record.to_dict() if record else None,
                "rescue_vm": rescue_vm.name if rescue_vm else None,
                "rescue_disk": seen.leftover_files[0] if seen.leftover_files else None}

    def _run_flow(self, kind: str, request: requests.Request, seen: observe.Observation,
                  on_step: StepCallback | None) -> Result:
        flow = self._flow(kind)
        store = self._store(kind, request, seen)
        if self.history is None:
            engine = taskflow.engines.load(flow, store=store, engine="serial")
        else:
            book, detail = self.history.new_flow_detail(request.request_id, kind)
            engine = taskflow.engines.load(flow, store=store, flow_detail=detail,
                                           book=book, backend=self.history.backend,
                                           engine="serial")
        LOG.info("Running %s for instance %s (request %s)", flow.name,
                 request.instance_uuid, request.request_id)
        return self._drive(kind, request, engine, on_step)

    def _drive(self, kind: str, request: requests.Request, engine: Any,
               on_step: StepCallback | None) -> Result:
        start_state, start_event = _START[kind]
        lifecycle = states.InstanceLifecycle(start_state)
        lifecycle.fire(start_event)
        recorder = StepRecorder(kind, on_step)
        recorder.attach(engine)
        try:
            engine.run()
        except Exception as exc:
            return self._failed(request, engine, recorder, lifecycle, exc)
        leftovers = [str(value) for value in
                     (_fetch_optional(engine, key) for key in _LEFTOVER_KEYS) if value]
        lifecycle.fire(states.SUCCEEDED_WITH_LEFTOVERS if leftovers else states.SUCCEEDED)
        reason = ("finished; left for a later unrescue: " + "; ".join(leftovers)
                  if leftovers else None)
        return self._result(request, Outcome.SUCCESS, step_durations=recorder.durations,
                            leftovers=leftovers, reason=reason)

    def _failed(self, request: requests.Request, engine: Any, recorder: StepRecorder,
                lifecycle: states.InstanceLifecycle, exc: Exception) -> Result:
        common = {"failed_step": recorder.failed_step,
                  "reverted_steps": list(recorder.reverted),
                  "step_durations": recorder.durations}
        first = _first_failure(engine)
        cause = first.exception_str if first is not None else str(exc)
        if engine.storage.get_flow_state() != tf_states.REVERTED:
            reason = (f"{recorder.failed_step} failed: {cause}; "
                      f"then reverting {recorder.revert_failed} failed: {exc}")
            self.quarantine.add(request.instance_uuid, reason, request.request_id)
            lifecycle.fire(states.REVERT_FAILED)
            LOG.error("Instance %s quarantined: %s", request.instance_uuid, reason)
            return self._result(request, Outcome.QUARANTINED, reason=reason, **common)
        lifecycle.fire(states.REVERTED)
        refused = first is not None and first.check(exceptions.ValidationError,
                                                    exceptions.InvalidRequest)
        return self._result(request, Outcome.REFUSED if refused else Outcome.FAILED,
                            reason=f"{recorder.failed_step} failed: {cause}", **common)


def _fetch_optional(engine: Any, key: str) -> Any:
    try:
        return engine.storage.fetch(key)
    except Exception:  # taskflow's NotFound: the flow has no such result yet
        return None


def _first_failure(engine: Any) -> Any:
    """The failure that started the revert (storage keeps it; run() may wrap it)."""
    for failure in engine.storage.get_execute_failures().values():
        return failure
    return None
