"""The flow queue: recorded requests run, in arrival order per instance, a
bounded number of instances at once, each result notified.

Requests come from the history, never straight from the broker: the
request intake (:mod:`.request_intake`) recorded each one first, and at
start the worker queues every request recorded and never finished.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rescue_flow import exceptions
from rescue_flow.engine import logs
from rescue_flow.engine.progress import StepEvent
from rescue_flow.engine.scheduler import KeyedScheduler
from rescue_flow.messaging import protocol
from rescue_flow.outcome import Result
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import RequestRecord, utcnow
from rescue_flow.requests import Request
from rescue_flow.service.metrics import INTERRUPTED, STORAGE_UNAVAILABLE, Metrics
from rescue_flow.service.storage_watch import StorageWatch

LOG = logging.getLogger(__name__)


class FlowQueue:
    """Runs recorded requests: per instance in order, a bounded number at once."""

    def __init__(self, runner: Any, results: protocol.Results, max_workers: int,
                 notify_steps: bool = False, metrics: Metrics | None = None) -> None:
        self.runner = runner
        self.results = results
        self.notify_steps = notify_steps
        self.metrics = metrics or Metrics()
        self.scheduler = KeyedScheduler(max_workers, name="flow")
        self.stats = {"ran": 0, "resumed": 0, "crashed": 0, "storage_unavailable": 0}
        self.stopping = threading.Event()
        ping = getattr(getattr(runner, "history", None), "ping", None)
        self.storage = StorageWatch(ping or (lambda: None), self.stopping)
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def submit(self, request: Request, progress: bool = False) -> None:
        self.scheduler.submit(request.instance_uuid, self._run, request, progress,
                              time.monotonic())

    def resume(self, record: RequestRecord) -> None:
        self.scheduler.submit(record.request.instance_uuid, self._resume, record)

    def _on_step(self, request: Request, progress: bool) -> Any:
        send = progress or self.notify_steps

        def on_step(event: StepEvent) -> None:
            self.metrics.step(event)
            if send:
                self.results.step(request, event)
        return on_step

    def _run(self, request: Request, progress: bool, submitted: float) -> None:
        with logs.request_context(request.request_id, request.instance_uuid):
            on_step = self._on_step(request, progress)
            LOG.info("Running %s of instance %s (request %s)", request.action,
                     request.instance_uuid, request.request_id)
            self._settle(request, lambda: self.runner.execute(request, on_step=on_step),
                         "ran", time.monotonic() - submitted)

    def _resume(self, record: RequestRecord) -> None:
        request = record.request
        # A request that never started waited from being recorded, across a
        # restart; one a crash interrupted has no such wait.
        waited = ((utcnow() - record.received_at).total_seconds()
                  if record.state == schema.ACCEPTED else None)
        with logs.request_context(request.request_id, request.instance_uuid):
            on_step = self._on_step(request, False)
            self._settle(request, lambda: self.runner.resume(record, on_step=on_step),
                         "resumed", waited)

    def _settle(self, request: Request, run: Any, counter: str,
                waited: float | None) -> None:
        if not self.storage.wait_until_up():
            return  # stopping: recorded, it runs at the next start
        self.metrics.flow_started(waited)
        outcome = INTERRUPTED
        try:
            result = run()
            outcome = result.outcome.value
        except exceptions.StorageUnavailable as exc:
            # Not the request's end: nothing was reverted or quarantined for it.
            outcome = STORAGE_UNAVAILABLE
            self._count("storage_unavailable")
            self.storage.down(exc)
            LOG.error("Request %s left unfinished: %s; it resumes once the database "
                      "answers", request.request_id, exc)
        except Exception:
            # Not a flow failure (those are results): the database or the
            # state folder failed us. The request stays recorded, unfinished,
            # and resumes at the next start.
            self._count("crashed")
            LOG.exception("Request %s stopped short; it resumes when the worker "
                          "starts again", request.request_id)
            return
        finally:
            self.metrics.flow_ended(request.action, outcome)
        if outcome == STORAGE_UNAVAILABLE:
            self._resume_when_up(request)
            return
        self._count(counter)
        notify(self.results, result)

    def _resume_when_up(self, request: Request) -> None:
        """Resume the request left by a storage outage, in its place in its
        instance's queue (this job holds it); at a stop, at the next start."""
        if not self.storage.wait_until_up():
            return
        try:
            record = self.runner.history.get(request.request_id)
        except exceptions.StorageUnavailable as exc:
            self.storage.down(exc)
            return self._resume_when_up(request)
        if record is not None and record.state != schema.FINISHED:
            on_step = self._on_step(request, False)
            self._settle(request, lambda: self.runner.resume(record, on_step=on_step),
                         "resumed", None)

    def running_and_waiting(self) -> tuple[int, int]:
        return self.scheduler.counts()

    def stop(self) -> None:
        """Start no new flow; the ones not started stay recorded for the next start."""
        self.stopping.set()
        left = self.scheduler.shutdown(wait=False)
        if left:
            LOG.info("%d recorded request(s) not started; they run at the next start",
                     len(left))

    def wait(self) -> None:
        self.scheduler.join()


def notify(results: protocol.Results, result: Result) -> None:
    log = LOG.info if result.outcome.ok else LOG.warning
    log("Request %s: %s of %s %s%s", result.request_id, result.action,
        result.instance_uuid, result.outcome.value,
        f": {result.reason}" if result.reason else "")
    try:
        results.result(result)
    except Exception:
        # The result is in the history; a redelivery or 'status' shows it.
        LOG.exception("Could not send the result of request %s", result.request_id)
