"""Handle one request: record it, check quarantine, read the host, decide, run.

The same code serves ``rescue-flow run`` (in the foreground), ``rescue-flow
resume`` and the worker. With a history (the default everywhere but unit
tests), a request is durably recorded before anything happens, a request id
seen before is not run again, and every flow's steps are persisted so that a
flow cut short by a crash resumes where it stopped. A failed flow is reverted
by TaskFlow; a revert that fails quarantines the instance.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import taskflow.engines
from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rescue_flow import exceptions, hyperv, requests
from rescue_flow.engine import logs, observe, states
from rescue_flow.engine.locks import instance_lock
from rescue_flow.engine.progress import StepCallback, StepRecorder
from rescue_flow.engine.quarantine import MemoryQuarantine, QuarantineList
from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History, RequestRecord
from rescue_flow.persistence.retrying import storage_unavailable
from rescue_flow.tasks.base import HostTask

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
    def __init__(self, host: HyperVHost, quarantine: QuarantineList | MemoryQuarantine,
                 host_name: str, lock_dir: str, history: History | None = None) -> None:
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
        quarantine = MemoryQuarantine() if history is None else QuarantineList(history)
        return cls(host, quarantine, conf.host, os.path.join(conf.state_path, "locks"),
                   history)

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
            try:
                new, record = self.history.accept(request)
            except exceptions.StorageUnavailable as exc:
                exc.recorded = False
                raise
            if not new:
                return self._duplicate(record)
        return self.execute(request, on_step)

    @_logged_as_request
    def execute(self, request: requests.Request,
                on_step: StepCallback | None = None) -> Result:
        """Run an accepted request to its end and record the result.

        Raises StorageUnavailable, and only that, when the history does not
        answer: the request is then left for a resume. Any other error is
        the request's end (FAILED, with the cause), recorded like any
        result: a caller told that it failed never sees it run later.
        """
        def run() -> Result:
            with instance_lock(self.lock_dir, request.instance_uuid):
                return self._handle_locked(request, on_step)
        return self._ended(request, run)

    @_logged_as_request
    def resume(self, record: RequestRecord, on_step: StepCallback | None = None) -> Result:
        """Finish a request that a crash (or the history's storage) interrupted.

        A flow cut short continues from its last recorded step. A flow that
        ended without its end being recorded (its result, or the quarantine
        with it, could not be written) gives its result from what it
        recorded: a failed revert is quarantined, never followed by a fresh
        flow on the host it left broken.
        """
        def run() -> Result:
            with instance_lock(self.lock_dir, record.request.instance_uuid):
                return self._resume_locked(record, on_step)
        return self._ended(record.request, run)

    def _ended(self, request: requests.Request, run: Callable[[], Result]) -> Result:
        """Check quarantine, ``run``, record the end, whatever the end is.

        An unexpected error is the request's end too (FAILED, with the cause
        and what the host looks like). Only StorageUnavailable escapes.
        """
        try:
            refused = self._quarantined(request)
            return self._finish(refused if refused is not None else run())
        except exceptions.StorageUnavailable:
            raise
        except Exception as exc:
            unavailable = storage_unavailable(exc)
            if unavailable is not None:
                raise unavailable from exc
            LOG.exception("Request %s failed outside its flow", request.request_id)
            reason = (f"failed outside its flow: {type(exc).__name__}: {exc}; "
                      f"host: {_host_state(self.host, request.instance_uuid)}")
            return self._finish(self._result(request, Outcome.FAILED, reason=reason))

    def _resume_locked(self, record: RequestRecord, on_step: StepCallback | None) -> Result:
        request = record.request
        if self.history is None:
            return self._handle_locked(request, on_step)
        last = self.history.last_flow(record)
        if last is None:
            return self._handle_locked(request, on_step)
        book, detail = last
        kind = detail.meta["kind"]
        if any(atom.revert_failure is not None for atom in detail):
            # A revert failed (whether or not its end was recorded): no
            # further automatic action on that host, not even the rest of
            # the revert.
            LOG.info("Request %s: a revert of its %s had failed", request.request_id, kind)
            return self._recorded_end(request, book, detail)
        if detail.state == tf_states.SUCCESS and kind == CLEANUP:
            return self._handle_locked(request, on_step)
        if detail.state in (tf_states.SUCCESS, tf_states.REVERTED):
            LOG.info("Request %s: its %s ended (%s) before the end was recorded",
                     request.request_id, kind, detail.state)
            return self._recorded_end(request, book, detail)
        # Cut short (RUNNING, REVERTING) or given up by TaskFlow when the
        # history stopped answering (FAILURE with no failed revert): go on.
        LOG.info("Resuming %s of request %s from its last recorded step", kind,
                 request.request_id)
        engine = taskflow.engines.load(self._flow(kind, request), flow_detail=detail,
                                       book=book, backend=self.history.backend,
                                       engine="serial")
        result = self._drive(kind, request, engine, on_step)
        if kind == CLEANUP and request.action == requests.RESCUE and \
                result.outcome is Outcome.SUCCESS and not result.leftovers:
            result = self._handle_locked(request, on_step)
        return result

    def resume_unfinished(self, on_step: StepCallback | None = None) -> list[Result]:
        """Resume every request of this host that was accepted and never finished."""
        if self.history is None:
            return []
        return [self.resume(record, on_step) for record in self.history.unfinished()]

    def _flow(self, kind: str, request: requests.Request) -> Any:
        """A new flow of this kind for ``request``, made of copies of tasks built once.

        Building a task inspects its execute and revert signatures, which
        costs more than copying it (bench B1, docs/benchmarks.md). ``Task.copy`` (TaskFlow's
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
                return _with_deadline(template, request)
            template = self._templates.setdefault(kind, template)
        return _with_deadline(linear_flow.Flow(template.name).add(
            *(atom.copy(retain_listeners=False) for atom in template)), request)

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
        """Record the end; a revert failure quarantines in the same transaction."""
        reason = result.reason if isinstance(result, Quarantining) else None
        if self.history is not None:
            self.history.finish(result, quarantine_reason=reason)
        elif reason is not None:
            self.quarantine.add(result.instance_uuid, reason, result.request_id)
        return result

    def _handle_locked(self, request: requests.Request,
                       on_step: StepCallback | None) -> Result:
        if request.past("start_by"):
            # The Nova driver stopped waiting for this request to start and
            # told Nova it failed: running it now would make them disagree.
            return self._result(
                request, Outcome.REFUSED,
                reason=f"not started by {request.start_by}, when its sender stopped "
                f"waiting for it to start; nothing was changed")
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
                    "request_id": request.request_id,
                    "shutdown_timeout": request.shutdown_timeout}
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
        flow = self._flow(kind, request)
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
            unavailable = storage_unavailable(exc)
            if unavailable is not None:
                # Not a step failure: no revert ran for it. The flow stays
                # as recorded, for a resume.
                raise unavailable from exc
            return self._failed(request, engine, recorder, lifecycle, exc)
        leftovers = [str(value) for value in
                     (_fetch_optional(engine, key) for key in _LEFTOVER_KEYS) if value]
        lifecycle.fire(states.SUCCEEDED_WITH_LEFTOVERS if leftovers else states.SUCCEEDED)
        reason = ("finished; left for a later unrescue: " + "; ".join(leftovers)
                  if leftovers else None)
        return self._result(request, Outcome.SUCCESS, step_durations=recorder.durations,
                            leftovers=leftovers, reason=reason)

    def _recorded_end(self, request: requests.Request, book: Any, detail: Any) -> Result:
        """The result of a flow that ended, read from its record; nothing runs.

        (Running a reverted flow's engine again would run the flow again.)
        """
        kind = detail.meta["kind"]
        if detail.state == tf_states.SUCCESS:
            engine = taskflow.engines.load(self._flow(kind, request), flow_detail=detail,
                                           book=book, backend=self.history.backend
                                           if self.history else None, engine="serial")
            leftovers = [str(value) for value in
                         (_fetch_optional(engine, key) for key in _LEFTOVER_KEYS) if value]
            return self._result(request, Outcome.SUCCESS, leftovers=leftovers)
        failed = [atom for atom in detail if atom.failure is not None]
        revert_failed = [atom for atom in detail if atom.revert_failure is not None]
        # Only a success, a complete revert or a failed revert ends here.
        common = {"failed_step": failed[0].name if failed else None,
                  "reverted_steps": [atom.name for atom in detail
                                     if atom.state == tf_states.REVERTED and
                                     atom.results is not None]}
        cause = failed[0].failure.exception_str if failed else "unknown"
        reason = f"{common['failed_step']} failed: {cause}"
        if detail.state == tf_states.REVERTED:
            refused = bool(failed) and failed[0].failure.check(
                exceptions.ValidationError, exceptions.InvalidRequest)
            return self._result(request, Outcome.REFUSED if refused else Outcome.FAILED,
                                reason=reason, **common)
        step = revert_failed[0].name if revert_failed else None
        revert_cause = (revert_failed[0].revert_failure.exception_str if revert_failed
                        else "unknown")
        reason += f"; then reverting {step} failed: {revert_cause}"
        LOG.error("Instance %s quarantined: %s", request.instance_uuid, reason)
        return Quarantining(**dataclasses.asdict(self._result(
            request, Outcome.QUARANTINED, reason=reason, **common)))

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
            lifecycle.fire(states.REVERT_FAILED)
            LOG.error("Instance %s quarantined: %s", request.instance_uuid, reason)
            return Quarantining(**dataclasses.asdict(self._result(
                request, Outcome.QUARANTINED, reason=reason, **common)))
        lifecycle.fire(states.REVERTED)
        refused = first is not None and first.check(exceptions.ValidationError,
                                                    exceptions.InvalidRequest)
        return self._result(request, Outcome.REFUSED if refused else Outcome.FAILED,
                            reason=f"{recorder.failed_step} failed: {cause}", **common)


def _with_deadline(flow: Any, request: requests.Request) -> Any:
    """Give this run's tasks the request's deadline (tasks/base.py: HostTask)."""
    for atom in flow:  # the flows are flat (flows/)
        if isinstance(atom, HostTask):
            atom.deadline = request.deadline
    return flow


def _host_state(host: HyperVHost, instance_uuid: str) -> str:
    try:
        return f"instance is {observe.observe(host, instance_uuid).state}"
    except Exception as exc:  # the host is what failed: say so
        return f"unreadable ({type(exc).__name__}: {exc})"


class Quarantining(Result):
    """A result whose instance goes into quarantine as it is recorded."""


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
