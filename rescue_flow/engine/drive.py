"""Run: one flow on TaskFlow's serial engine, fresh or resumed, to its end.

The end of the flow is the next event of the instance's state machine
(``succeeded``, ``succeeded_with_leftovers``, ``reverted``,
``revert_failed``); what the caller gets back is the flow's Result.
"""

from __future__ import annotations

import logging
from typing import Any

import taskflow.engines
from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rescue_flow import requests
from rescue_flow.engine import states
from rescue_flow.engine.progress import StepCallback, StepRecorder
from rescue_flow.engine.report import Reporter
from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.outcome import Result
from rescue_flow.persistence.history import History
from rescue_flow.persistence.retrying import storage_unavailable
from rescue_flow.tasks import observe
from rescue_flow.tasks.base import HostTask

LOG = logging.getLogger(__name__)

_FACTORIES = {requests.RESCUE: get_rescue_flow, requests.UNRESCUE: get_unrescue_flow,
              states.CLEANUP: get_cleanup_flow}
_LEFTOVER_KEYS = ("rescue_vm_leftover", "rescue_disk_leftover",
                  "rescue_config_drive_leftover")


class FlowDriver:
    """Builds, loads and runs the flows of one host."""

    def __init__(self, host: HyperVHost, history: History | None,
                 reporter: Reporter) -> None:
        self.host = host
        self.history = history
        self.report = reporter
        # Each kind's flow as its factory builds it, copied for every run (flow).
        self._templates: dict[str, Any] = {}

    def flow(self, kind: str, request: requests.Request) -> Any:
        """A new flow of this kind for ``request``, made of copies of tasks built once.

        Building a task inspects its execute and revert signatures, which
        costs more than copying it (bench B1, docs/benchmarks.md). ``Task.copy``
        (TaskFlow's own) gives the same task, with the same name, arguments
        and results and a notifier of its own, so runs share nothing but the
        host, as before (a task keeps nothing else of its own: tasks/base.py).
        Only a flat linear flow of tasks is copied like this; any other shape
        is built by its factory every time.
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

    def start(self, kind: str, request: requests.Request,
              seen: observe.Observation | None) -> Any:
        """A fresh engine for a flow of ``kind`` (recorded, with a history)."""
        flow = self.flow(kind, request)
        store = _store(kind, request, seen)
        if self.history is None:
            engine = taskflow.engines.load(flow, store=store, engine="serial")
        else:
            book, detail = self.history.new_flow_detail(request.request_id, kind)
            engine = taskflow.engines.load(flow, store=store, flow_detail=detail,
                                           book=book, backend=self.history.backend,
                                           engine="serial")
        LOG.info("Running %s for instance %s (request %s)", flow.name,
                 request.instance_uuid, request.request_id)
        return engine

    def load(self, kind: str, request: requests.Request, book: Any, detail: Any) -> Any:
        """The engine of a recorded flow, to resume it or read its results."""
        return taskflow.engines.load(self.flow(kind, request), flow_detail=detail,
                                     book=book, backend=self.history.backend
                                     if self.history else None, engine="serial")

    def run(self, kind: str, request: requests.Request, engine: Any,
            machine: states.InstanceMachine, on_step: StepCallback | None) -> Result:
        """Run ``engine`` to its end, move ``machine`` on that end, report it."""
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
            return self._failed(request, engine, recorder, machine, exc)
        leftovers = leftovers_of(engine)
        machine.fire(states.SUCCEEDED_WITH_LEFTOVERS if leftovers else states.SUCCEEDED)
        return self.report.succeeded(request, leftovers, recorder.durations)

    def _failed(self, request: requests.Request, engine: Any, recorder: StepRecorder,
                machine: states.InstanceMachine, exc: Exception) -> Result:
        common = {"reverted_steps": list(recorder.reverted),
                  "step_durations": recorder.durations}
        first = _first_failure(engine)
        cause = first.exception_str if first is not None else str(exc)
        if engine.storage.get_flow_state() != tf_states.REVERTED:
            machine.fire(states.REVERT_FAILED)
            return self.report.revert_failed(request, recorder.failed_step, cause,
                                             recorder.revert_failed, str(exc), **common)
        machine.fire(states.REVERTED)
        return self.report.reverted(request, recorder.failed_step, cause, first, **common)


def leftovers_of(engine: Any) -> list[str]:
    """What the flow's irreversible clean-up steps could not remove."""
    return [str(value) for value in
            (_fetch_optional(engine, key) for key in _LEFTOVER_KEYS) if value]


def _store(kind: str, request: requests.Request,
           seen: observe.Observation | None) -> dict[str, Any]:
    # The look at the host that decided to run the flow goes with it, so its
    # first task does not read the same again (tasks/validate.py). A flow
    # that follows a clean-up has none (the host changed since): its first
    # task reads the host itself.
    observed = seen.for_flow() if seen is not None else None
    if kind == requests.RESCUE:
        return {"instance_uuid": request.instance_uuid, "image_id": request.image_id,
                "observed": observed,
                "image_generation": request.image_generation,
                "image_os_secure_boot": request.image_os_secure_boot,
                "image_os_type": request.image_os_type,
                "request_id": request.request_id,
                "shutdown_timeout": request.shutdown_timeout,
                "config_drive": request.config_drive}
    if kind == requests.UNRESCUE:
        return {"instance_uuid": request.instance_uuid, "observed": observed,
                "request_id": request.request_id}
    assert seen is not None, "a clean-up starts from what the host showed"
    rescue_vm = seen.rescue_vm
    record = rescue_vm.record if rescue_vm else None
    return {"instance_vm": seen.instance_vm,
            "original": record.to_dict() if record else None,
            "rescue_vm": rescue_vm.name if rescue_vm else None,
            "rescue_disk": seen.leftover_files[0] if seen.leftover_files else None,
            # A rescue cleaning up first: its own new drive must stay.
            "config_drive": request.config_drive}


def _with_deadline(flow: Any, request: requests.Request) -> Any:
    """Give this run's tasks the request's deadline (tasks/base.py: HostTask)."""
    for atom in flow:  # the flows are flat (flows/)
        if isinstance(atom, HostTask):
            atom.deadline = request.deadline
    return flow


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
