"""The worker: takes this host's requests, runs their flows, reports results.

One listener on ``<[worker] requests_topic>.<[DEFAULT] host>`` hands each
request to a :class:`RequestHandler`, in arrival order per instance, up to
``[worker] max_concurrent_flows`` instances at once. The message is
acknowledged only when the handler returns, after the flow and its result
notification: a crash or a broker restart before that means redelivery (see
:mod:`rescue_flow.listener` for the whole delivery story). The worker also
runs the intake on Nova's exchange unless ``[nova] enabled`` is false.

No fork and no signal-driven thread tricks, so it runs on Windows as well.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import oslo_messaging

from rescue_flow import consumer, exceptions, hyperv, listener, messaging, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.runner import FlowRunner

LOG = logging.getLogger(__name__)


class RequestHandler:
    """Runs one request from this host's queue, once, and notifies its result."""

    def __init__(self, runner: Any, results: protocol.Results, host: str,
                 max_attempts: int, remembered: int = 10000,
                 notify_steps: bool = False) -> None:
        self.runner = runner
        self.notify_steps = notify_steps
        self.results = results
        self.host = host
        self.max_attempts = max_attempts
        # request id -> [Result, notified]; a later issue makes this durable.
        self.finished = protocol.BoundedRecord(remembered)
        self._attempts = protocol.BoundedRecord(max(remembered, 1000))
        self.stats = {"received": 0, "ran": 0, "duplicates": 0, "invalid": 0,
                      "requeued": 0, "gave_up": 0}
        self._stats_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def __call__(self, context: Mapping[str, Any], message: Mapping[str, Any]) -> Any:
        self._count("received")
        key = str(message.get("message_id"))
        outcome = protocol.bounded_attempts(
            self._attempts, key, self.max_attempts, lambda: self._handle(message),
            lambda reason: self._give_up(reason, message), what=f"Request message {key}")
        if outcome == messaging.REQUEUE:
            self._count("requeued")
        return outcome

    def _handle(self, message: Mapping[str, Any]) -> Any:
        try:
            request, progress = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest as exc:
            self._count("invalid")
            payload = message.get("payload")
            fields = payload if isinstance(payload, dict) else {}
            LOG.warning("Message %s is not a valid request: %s",
                        message.get("message_id"), exc)
            self.results.invalid(str(exc), self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return messaging.HANDLED
        done = self.finished.get(request.request_id)
        if done is not None:
            self._count("duplicates")
            LOG.info("Request %s was already handled; not running it again",
                     request.request_id)
            if not done[1]:  # its result never went out
                self._notify(request.request_id, done[0])
            return messaging.HANDLED
        on_step = ((lambda event: self.results.step(request, event))
                   if progress or self.notify_steps else None)
        LOG.info("Running %s of instance %s (request %s)", request.action,
                 request.instance_uuid, request.request_id)
        result = self.runner.handle(request, on_step=on_step)
        self._count("ran")
        self.finished.put(request.request_id, [result, False])
        self._notify(request.request_id, result)
        return messaging.HANDLED

    def _notify(self, request_id: str, result: Result) -> None:
        log = LOG.info if result.outcome.ok else LOG.warning
        log("Request %s: %s of %s %s%s", request_id, result.action, result.instance_uuid,
            result.outcome.value, f": {result.reason}" if result.reason else "")
        self.results.result(result)
        self.finished.put(request_id, [result, True])

    def _give_up(self, reason: str, message: Mapping[str, Any]) -> None:
        self._count("gave_up")
        try:
            request, _ = protocol.request_from_message(message, self.host)
        except exceptions.InvalidRequest:
            payload = message.get("payload")
            fields = payload if isinstance(payload, dict) else {}
            self.results.invalid(reason, self.host, action=fields.get("action"),
                                 request_id=fields.get("request_id"),
                                 instance_uuid=fields.get("instance_uuid"))
            return
        self.results.result(Result(
            request_id=request.request_id, action=request.action,
            instance_uuid=request.instance_uuid, host=self.host,
            outcome=Outcome.FAILED, reason=reason))


class Worker:
    """The daemon's parts, started and stopped together."""

    def __init__(self, conf: Any, runner: Any = None) -> None:
        self.conf = conf
        self.host = messaging.check_host_name(conf.host)
        self.transport = messaging.rescue_transport(conf)
        publisher = messaging.Publisher(self.transport, conf.worker.exchange,
                                        f"rescue-flow:{self.host}")
        self.results = protocol.Results(publisher, conf.worker.results_topic)
        self.router = protocol.Router(publisher, conf.worker.requests_topic)
        if runner is None:
            runner = FlowRunner.from_conf(conf, hyperv.get_host(conf))
        self.handler = RequestHandler(runner, self.results, self.host,
                                      conf.worker.max_delivery_attempts,
                                      conf.worker.remembered_requests,
                                      conf.worker.notify_steps)
        target = oslo_messaging.Target(
            exchange=conf.worker.exchange,
            topic=protocol.request_topic(conf.worker.requests_topic, self.host))
        self.requests = consumer.OrderedListener(
            self.transport, [target], self.handler, protocol.instance_key,
            max_workers=conf.worker.max_concurrent_flows, name="flow")
        self.nova_transport = None
        self.intake = None
        if conf.nova.enabled:
            self.nova_transport = messaging.nova_transport(conf)
            self.intake = listener.build_intake(conf, self.nova_transport, self.router,
                                                self.results)

    def start(self) -> None:
        self.requests.start()
        if self.intake is not None:
            self.intake.start()
        LOG.info("Worker for host %s started: %d flows at once%s", self.host,
                 self.conf.worker.max_concurrent_flows,
                 f", taking Nova's events from pool {self.conf.nova.pool}"
                 if self.intake else "")

    def stop(self) -> None:
        """Take no new message; requests not started go back to their queue."""
        if self.intake is not None:
            self.intake.stop()
        self.requests.stop()

    def wait(self) -> None:
        """Wait for running flows to finish, then close the connections."""
        if self.intake is not None:
            self.intake.wait()
        self.requests.wait()
        self.transport.cleanup()
        if self.nova_transport is not None:
            self.nova_transport.cleanup()
        LOG.info("Worker for host %s stopped", self.host)

    def running_and_waiting(self) -> tuple[int, int]:
        return self.requests.running_and_waiting()

