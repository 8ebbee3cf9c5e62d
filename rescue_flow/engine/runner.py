"""Handle one request: record it, decide, run, report; each piece its own module.

The same code serves ``rescue-flow run`` (in the foreground), ``rescue-flow
resume`` and the worker. :class:`FlowRunner` only puts the pieces in order:

1. record (:mod:`.record`): the request is durably recorded before anything
   happens; a request id seen before is not run again;
2. decide (:mod:`.decide`, :mod:`.states`): the instance's state, from the
   quarantine list and the host, and the transition the request fires in
   the state machine: run a flow, nothing to do, wait, or refuse;
3. run (:mod:`.drive`): the flow, each step persisted so that a flow cut
   short by a crash resumes where it stopped; its end is the machine's
   next event, and the request fires again from the state it reached (a
   clean-up first, then the rescue);
4. report (:mod:`.report`) and record the end, with the instance's state.

A failed flow is reverted by TaskFlow; a revert that fails quarantines the
instance.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from taskflow import states as tf_states

from rescue_flow import exceptions, hyperv, requests
from rescue_flow.engine import decide, logs, states
from rescue_flow.engine.drive import FlowDriver, leftovers_of
from rescue_flow.engine.locks import instance_lock
from rescue_flow.engine.progress import StepCallback
from rescue_flow.engine.quarantine import MemoryQuarantine, QuarantineList
from rescue_flow.engine.record import Recorder
from rescue_flow.engine.report import Quarantining, Reporter
from rescue_flow.hyperv.host import HyperVHost
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History, RequestRecord
from rescue_flow.persistence.retrying import storage_unavailable
from rescue_flow.tasks import observe

LOG = logging.getLogger(__name__)

CLEANUP = states.CLEANUP
_Method = TypeVar("_Method", bound=Callable[..., Any])
__all__ = ["CLEANUP", "FlowRunner", "Quarantining"]


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
        self.report = Reporter(host_name)
        self.recorder = Recorder(history, quarantine)
        self.driver = FlowDriver(host, history, self.report)

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

    # Entry points ------------------------------------------------------

    @_logged_as_request
    def handle(self, request: requests.Request,
               on_step: StepCallback | None = None) -> Result:
        """Record the request (once per request id), then execute it."""
        earlier = self.recorder.accept(request)
        if earlier is not None:
            return self.report.duplicate(earlier)
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
        waited: list[bool] = []

        def run() -> tuple[Result, str | None]:
            with instance_lock(self.lock_dir, request.instance_uuid,
                               on_wait=lambda: waited.append(self._wait(request))):
                # The flow we waited behind may have quarantined the instance.
                refused = self._refuse_quarantined(request) if waited else None
                return refused or self._handle_locked(request, on_step)
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
        def run() -> tuple[Result, str | None]:
            with instance_lock(self.lock_dir, record.request.instance_uuid):
                return self._resume_locked(record, on_step)
        return self._ended(record.request, run)

    def resume_unfinished(self, on_step: StepCallback | None = None) -> list[Result]:
        """Resume every request of this host that was accepted and never finished."""
        if self.history is None:
            return []
        return [self.resume(record, on_step) for record in self.history.unfinished()]

    # The pieces in order -------------------------------------------------

    def _ended(self, request: requests.Request,
               run: Callable[[], tuple[Result, str | None]]) -> Result:
        """``run``, then record the end, whatever the end is.

        An unexpected error is the request's end too (FAILED, with the cause
        and what the host looks like). Only StorageUnavailable escapes.
        """
        try:
            refused = self._refuse_quarantined(request)
            result, state = refused if refused is not None else run()
            return self.recorder.finish(result, state)
        except exceptions.StorageUnavailable:
            raise
        except Exception as exc:
            unavailable = storage_unavailable(exc)
            if unavailable is not None:
                raise unavailable from exc
            LOG.exception("Request %s failed outside its flow", request.request_id)
            reason = (f"failed outside its flow: {type(exc).__name__}: {exc}; "
                      f"host: {_host_state(self.host, request.instance_uuid)}")
            return self.recorder.finish(self.report.result(request, Outcome.FAILED,
                                                           reason=reason))

    def _refuse_quarantined(self, request: requests.Request) -> tuple[Result, str] | None:
        """A quarantined instance refuses every request, before its lock is
        taken and before the host is read."""
        found = decide.quarantined(self.quarantine, request.instance_uuid)
        if found is None:
            return None
        machine, entry = found
        transition = machine.fire(request.action)
        assert transition.act is states.Act.REFUSE, transition
        return self.report.quarantined(request, entry), machine.state

    def _wait(self, request: requests.Request) -> bool:
        """Another process holds the instance: say what the request waits for."""
        try:
            state = decide.in_flight_state(self.history, request)
        except Exception:  # only a log line depends on it: never fail for it
            LOG.debug("Could not read which flow holds instance %s",
                      request.instance_uuid, exc_info=True)
            state = None
        if state is None:
            LOG.info("Request %s waits: another process holds instance %s",
                     request.request_id, request.instance_uuid)
            return True
        transition = states.InstanceMachine(state).fire(request.action)
        LOG.info("Request %s: instance %s is %s, so the %s %ss behind its flow",
                 request.request_id, request.instance_uuid, state, request.action,
                 transition.act.value)
        return True

    def _handle_locked(self, request: requests.Request,
                       on_step: StepCallback | None) -> tuple[Result, str | None]:
        if request.past("start_by"):
            # The Nova driver stopped waiting for this request to start and
            # told Nova it failed: running it now would make them disagree.
            return self.report.result(
                request, Outcome.REFUSED,
                reason=f"not started by {request.start_by}, when its sender stopped "
                f"waiting for it to start; nothing was changed"), None
        try:
            machine, seen = decide.read_host(self.host, request.instance_uuid)
        except exceptions.RescueFlowError as exc:
            outcome = (Outcome.REFUSED if isinstance(exc, exceptions.ValidationError)
                       else Outcome.FAILED)
            return self.report.result(request, outcome, reason=str(exc)), None
        return self._follow(machine, request, seen, on_step), machine.state

    def _follow(self, machine: states.InstanceMachine, request: requests.Request,
                seen: observe.Observation | None,
                on_step: StepCallback | None) -> Result:
        """Fire the request in the machine until a transition runs no flow.

        A flow that succeeded without leftovers lets the request fire again
        from the state it reached: after a clean-up, a rescue runs; after a
        rescue, the next firing is "nothing to do" and the rescue's result
        stands. A failed flow ends the request there. The table allows at
        most a clean-up and then the request's own flow.
        """
        ran: Result | None = None
        while True:
            transition = machine.fire(request.action)
            if transition.act is states.Act.NOTHING_TO_DO:
                return ran or self.report.result(
                    request, Outcome.NOTHING_TO_DO,
                    reason=states.NOTHING_TO_DO_REASONS[request.action])
            if transition.act is not states.Act.RUN or transition.flow is None:
                # The host never shows a flow in flight (WAIT) and quarantine
                # was refused before the lock (REFUSE): a bug if reached.
                raise states.IllegalTransition(transition.source, request.action)
            engine = self.driver.start(transition.flow, request, seen)
            ran = self.driver.run(transition.flow, request, engine, machine, on_step)
            if not ran.outcome.ok or ran.leftovers:
                return ran
            # What the host showed is stale once a flow changed it: the next
            # flow's first task reads the host itself.
            seen = None

    def _resume_locked(self, record: RequestRecord,
                       on_step: StepCallback | None) -> tuple[Result, str | None]:
        request = record.request
        last = self.history.last_flow(record) if self.history is not None else None
        if last is None:
            return self._handle_locked(request, on_step)
        book, detail = last
        kind = detail.meta["kind"]
        if any(atom.revert_failure is not None for atom in detail):
            # A revert failed (whether or not its end was recorded): no
            # further automatic action on that host, not even the rest of
            # the revert.
            LOG.info("Request %s: a revert of its %s had failed", request.request_id, kind)
            return self._recorded_end(request, book, detail), states.QUARANTINED
        if detail.state == tf_states.SUCCESS and kind == CLEANUP:
            return self._handle_locked(request, on_step)
        if detail.state in (tf_states.SUCCESS, tf_states.REVERTED):
            LOG.info("Request %s: its %s ended (%s) before the end was recorded",
                     request.request_id, kind, detail.state)
            return self._recorded_end(request, book, detail), None
        # Cut short (RUNNING, REVERTING) or given up by TaskFlow when the
        # history stopped answering (FAILURE with no failed revert): go on,
        # in the state the flow runs in.
        LOG.info("Resuming %s of request %s from its last recorded step", kind,
                 request.request_id)
        machine = states.InstanceMachine(states.FLOW_STATES[kind])
        engine = self.driver.load(kind, request, book, detail)
        result = self.driver.run(kind, request, engine, machine, on_step)
        if kind == CLEANUP and request.action == requests.RESCUE and \
                result.outcome is Outcome.SUCCESS and not result.leftovers:
            return self._handle_locked(request, on_step)
        return result, machine.state

    def _recorded_end(self, request: requests.Request, book: Any, detail: Any) -> Result:
        """The result of a flow that ended, read from its record; nothing runs.

        (Running a reverted flow's engine again would run the flow again.)
        """
        leftovers: list[str] = []
        if detail.state == tf_states.SUCCESS:
            leftovers = leftovers_of(self.driver.load(detail.meta["kind"], request,
                                                      book, detail))
        return self.report.recorded_end(request, detail, leftovers)


def _host_state(host: HyperVHost, instance_uuid: str) -> str:
    try:
        return f"instance is {observe.observe(host, instance_uuid).state}"
    except Exception as exc:  # the host is what failed: say so
        return f"unreadable ({type(exc).__name__}: {exc})"
