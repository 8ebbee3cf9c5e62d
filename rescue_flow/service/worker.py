"""The worker: records this host's requests, runs their flows, reports results.

Delivery, from the worker's side (see :mod:`rescue_flow.listener` for the
intake on Nova's exchange):

1. One listener on ``<[worker] requests_topic>.<[DEFAULT] host>`` hands each
   message to :class:`RequestIntake`, one at a time per instance in arrival
   order. The intake records the request in the history (a fsynced insert)
   and only then lets the message be acknowledged. A request id recorded
   before is not run again; if it finished, its result is sent again (the
   first notification may never have gone out).
2. :class:`FlowQueue` runs recorded requests, in arrival order per instance
   and up to ``[worker] max_concurrent_flows`` instances at once, from the
   history: a flow's steps are persisted as it goes.
3. At start, before taking new messages, the worker queues every request of
   this host that was recorded and never finished (interrupted by a crash,
   or never started before a stop): they resume where they stopped. A
   graceful stop lets running flows finish and leaves the rest recorded.
4. Finished requests older than ``[persistence] history_days`` are purged at
   start and once a day.

No fork and no signal-driven thread tricks, so it runs on Windows as well.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from rescue_flow import exceptions, hyperv, listener
from rescue_flow.engine import logs
from rescue_flow.engine.progress import StepEvent
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.engine.scheduler import KeyedScheduler
from rescue_flow.messaging import bus, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import History, RequestRecord, utcnow
from rescue_flow.requests import Request
from rescue_flow.service.driver_presence import DriverHello, DriverPresence
from rescue_flow.service.metrics import INTERRUPTED, STORAGE_UNAVAILABLE, Metrics, MetricsServer
from rescue_flow.service.storage_watch import StorageWatch

LOG = logging.getLogger(__name__)

PURGE_INTERVAL = 24 * 3600.0


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


class RequestIntake:
    """Records each request from this host's queue, then lets its message go."""

    def __init__(self, history: History, flows: FlowQueue, results: protocol.Results,
                 host: str, max_attempts: int, remembered: int = 10000,
                 metrics: Metrics | None = None,
                 presence: DriverPresence | None = None) -> None:
        self.history = history
        self.presence = presence
        self.flows = flows
        self.results = results
        self.host = host
        self.max_attempts = max_attempts
        self.metrics = metrics or flows.metrics
        self._attempts = protocol.BoundedRecord(max(remembered, 1000))
        self.stats = {"received": 0, "accepted": 0, "duplicates": 0, "invalid": 0,
                      "requeued": 0, "gave_up": 0, "left_to_driver": 0}
        self._stats_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1
        if name in _REJECTED:
            self.metrics.rejected(_REJECTED[name])

    def __call__(self, context: Mapping[str, Any], message: Mapping[str, Any]) -> Any:
        fields = _payload_fields(message)
        request_id = fields.get("request_id")
        with logs.request_context(
                request_id if isinstance(request_id, str) else message.get("message_id"),
                fields.get("instance_uuid")):
            self._count("received")
            self.metrics.received(fields.get("source"))
            key = str(message.get("message_id"))
            outcome = protocol.bounded_attempts(
                self._attempts, key, self.max_attempts, lambda: self._accept(message),
                lambda reason: self._give_up(reason, message),
                what=f"Request message {key}")
            if outcome == bus.REQUEUE:
                self._count("requeued")
            return outcome

    def _accept(self, message: Mapping[str, Any]) -> Any:
        try:
            if message.get("event_type") == bus.DRIVER_HELLO_EVENT:
                return self._hello(DriverHello.from_message(message, self.host))
            request, progress = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest as exc:
            self._count("invalid")
            LOG.warning("Message %s is not a valid request: %s",
                        message.get("message_id"), exc)
            fields = _payload_fields(message)
            self.results.invalid(str(exc), self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return bus.HANDLED
        driver = self.presence.driver() if self.presence is not None else None
        if request.source == "nova" and driver is not None:
            # Nova calls its driver right after this event; the driver's
            # request (same request id) is the one to run (driver_presence).
            self._count("left_to_driver")
            LOG.info("Nova's %s of instance %s (Nova request %s) is left to this host's "
                     "Nova driver %s", request.action, request.instance_uuid,
                     request.nova_request_id, driver)
            return bus.HANDLED
        try:
            new, record = self.history.accept(request)
        except exceptions.StorageUnavailable as exc:
            # Not the message's fault: hold it (unacknowledged) until the
            # database answers, instead of spending its delivery attempts.
            self.flows.storage.down(exc)
            if not self.flows.storage.wait_until_up():
                return bus.REQUEUE  # stopping: back to the broker
            return self._accept(message)
        if new:
            self._count("accepted")
            self.flows.submit(request, progress)
            return bus.HANDLED
        self._count("duplicates")
        LOG.info("Request %s was recorded before; not running it again",
                 request.request_id)
        if record.result is not None:
            notify(self.results, Result.from_dict(record.result))
        return bus.HANDLED

    def _hello(self, hello: DriverHello) -> Any:
        if self.presence is None:
            LOG.warning("Ignoring the announcement of Nova driver %s: this intake keeps "
                        "no record of drivers", hello.driver)
        else:
            self.presence.announce(hello)
        return bus.HANDLED

    def _give_up(self, reason: str, message: Mapping[str, Any]) -> None:
        self._count("gave_up")
        try:
            request, _ = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest:
            fields = _payload_fields(message)
            self.results.invalid(reason, self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return
        self.results.result(Result(
            request_id=request.request_id, action=request.action,
            instance_uuid=request.instance_uuid, host=self.host,
            outcome=Outcome.FAILED, reason=reason))


# RequestIntake's counts that are rejections, and their metric's reason.
_REJECTED = {"invalid": "invalid", "duplicates": "duplicate", "gave_up": "gave_up"}


def _payload_fields(message: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = message.get("payload")
    return payload if isinstance(payload, dict) else {}


class Worker:
    """The daemon's parts, started and stopped together."""

    def __init__(self, conf: Any, runner: Any = None, history: History | None = None) -> None:
        self.conf = conf
        self.host = bus.check_host_name(conf.host)
        self.transport = bus.rescue_transport(conf)
        publisher = bus.Publisher(self.transport, conf.worker.exchange,
                                  f"rescue-flow:{self.host}")
        self.results = protocol.Results(publisher, conf.worker.results_topic)
        self.router = protocol.Router(publisher, conf.worker.requests_topic)
        self.history = history or getattr(runner, "history", None) or \
            History.from_conf(conf, wait=True)
        if runner is None:
            runner = FlowRunner.from_conf(conf, hyperv.get_host(conf), self.history)
        self.metrics = Metrics()
        quarantine = QuarantineList(self.history)
        self.metrics.watch_quarantine(quarantine.count)
        self.flows = FlowQueue(runner, self.results, conf.worker.max_concurrent_flows,
                               conf.worker.notify_steps, self.metrics)
        self.metrics.watch_queue(lambda: self.flows.running_and_waiting()[1])
        self.metrics_server: MetricsServer | None = None
        self.presence = DriverPresence(self.history.engine, self.host)
        self.handler = RequestIntake(self.history, self.flows, self.results,
                                     self.host, conf.worker.max_delivery_attempts,
                                     conf.worker.remembered_requests, self.metrics,
                                     self.presence)
        self.requests = listener.request_listener(conf, self.transport, self.host,
                                                  self.handler)
        self.nova_transport = None
        self.intake = None
        if conf.nova.enabled:
            self.nova_transport = bus.nova_transport(conf)
            self.intake = listener.nova_listener(conf, self.nova_transport, self.router,
                                                 self.results)
        self._stopping = threading.Event()
        self._purger = threading.Thread(target=self._purge_daily, name="purge",
                                        daemon=True)

    def start(self) -> None:
        if self.conf.metrics.enabled:
            self._serve_metrics()
        self.purge()
        unfinished = self.history.unfinished()
        for record in unfinished:
            self.flows.resume(record)
        self.requests.start()
        if self.intake is not None:
            self.intake.start()
        self._purger.start()
        LOG.info("Worker for host %s started: %d flows at once, %d request(s) to "
                 "resume%s", self.host, self.conf.worker.max_concurrent_flows,
                 len(unfinished), f", taking Nova's events from pool {self.conf.nova.pool}"
                 if self.intake else "")

    def _serve_metrics(self) -> None:
        host, port = self.conf.metrics.bind_host, self.conf.metrics.port
        try:
            self.metrics_server = MetricsServer(self.metrics.registry, host, port)
        except OSError as exc:
            # Rescues matter more than their metrics: run without, say so
            # loudly; 'rescue-flow worker --check' reports the same.
            LOG.error("Could not serve metrics on %s port %s: %s; running without "
                      "them", host, port, exc)
            return
        LOG.info("Serving Prometheus metrics at %s", self.metrics_server.url)

    def purge(self) -> int:
        days = self.conf.persistence.history_days
        try:
            purged = self.history.purge(datetime.timedelta(days=days))
        except Exception:
            LOG.exception("Could not purge the history; will try again later")
            return 0
        if purged:
            LOG.info("Purged %d finished request(s) older than %d days", purged, days)
        return purged

    def _purge_daily(self) -> None:
        while not self._stopping.wait(PURGE_INTERVAL):
            self.purge()

    def stop(self) -> None:
        """Take no new message; recorded requests not started wait for the next start."""
        self._stopping.set()
        if self.intake is not None:
            self.intake.stop()
        self.requests.stop()
        self.flows.stop()

    def wait(self) -> None:
        """Wait for running flows to finish, then close the connections."""
        if self.intake is not None:
            self.intake.wait()
        self.requests.wait()
        self.flows.wait()
        self.transport.cleanup()
        if self.nova_transport is not None:
            self.nova_transport.cleanup()
        self.history.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        LOG.info("Worker for host %s stopped", self.host)

    def running_and_waiting(self) -> tuple[int, int]:
        return self.flows.running_and_waiting()
