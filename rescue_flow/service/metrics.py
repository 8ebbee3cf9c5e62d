"""Prometheus metrics of one worker, on a registry of its own.

Each :class:`Metrics` owns a ``CollectorRegistry``, not prometheus_client's
global one, so that several workers in one process (tests, the demo) never
share or collide on a metric. The worker feeds it through a few hooks:

- :class:`rescue_flow.service.request_intake.RequestIntake`: every delivery taken from the
  host's queue (``received``), and the ones not run (``rejected``: invalid,
  duplicate, gave_up);
- :class:`rescue_flow.service.flow_queue.FlowQueue`: how long a recorded request waited
  for its flow, flows in flight, and each request's outcome;
- the runner's ``on_step`` callback: each step's duration;
- at scrape time: the quarantine list (a table of the history) and the requests
  recorded but waiting for a flow slot.

``[metrics] enabled`` serves them with prometheus_client's own HTTP server (a
daemon thread) on ``[metrics] bind_host``/``port``; :meth:`MetricsServer.stop`
closes it when the worker stops.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from rescue_flow.engine.progress import StepEvent
from rescue_flow.outcome import Outcome

LOG = logging.getLogger(__name__)

# A Hyper-V step takes from a few milliseconds (a WMI read) to minutes (a
# soft shutdown waits up to [hyperv] soft_shutdown_timeout, retries back off).
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                600.0)
# From "ran at once" to "waited behind a long flow of the same instance" or
# "waited for the worker to start again".
WAIT_BUCKETS = (0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

# Label values are bounded: anything else a message claims counts as "other".
SOURCES = ("nova", "client", "cli", "demo")
REJECTED_REASONS = ("invalid", "duplicate", "gave_up")
KINDS = ("rescue", "unrescue")
# A flow that stopped short (the database or the state folder failed): the
# request stays recorded and resumes at the next start.
INTERRUPTED = "interrupted"
# The history database did not answer: the request waits for a resume.
STORAGE_UNAVAILABLE = "storage_unavailable"
OUTCOMES = (*(outcome.value for outcome in Outcome), INTERRUPTED, STORAGE_UNAVAILABLE)
# Only a step's execution is timed; its revert is another matter.
_TIMED_STATES = ("SUCCESS", "FAILURE")


class Metrics:
    """The worker's metrics; the hooks below are all the worker calls."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests_received = Counter(
            "rescue_flow_requests_received",
            "Request messages taken from this host's queue (a requeued message "
            "counts each time it comes back), by the request's source.",
            ["source"], registry=registry)
        self.requests_rejected = Counter(
            "rescue_flow_requests_rejected",
            "Request messages that did not start a flow: invalid (bad input, "
            "answered with an error), duplicate (request id recorded before), "
            "gave_up ([worker] max_delivery_attempts reached).",
            ["reason"], registry=registry)
        self.flows = Counter(
            "rescue_flow_flows",
            "Requests run to their end, by action (kind) and outcome; "
            "'interrupted' stopped short and resumes at the next start.",
            ["kind", "outcome"], registry=registry)
        self.step_duration = Histogram(
            "rescue_flow_step_duration_seconds",
            "How long each flow step ran (execution, not its revert).",
            ["flow", "step"], buckets=STEP_BUCKETS, registry=registry)
        self.flows_in_flight = Gauge(
            "rescue_flow_flows_in_flight", "Requests whose flow is running now.",
            registry=registry)
        self.request_wait = Histogram(
            "rescue_flow_request_wait_seconds",
            "Time from a request being recorded to its flow starting.",
            buckets=WAIT_BUCKETS, registry=registry)
        self.requests_queued = Gauge(
            "rescue_flow_requests_queued",
            "Recorded requests waiting for a flow slot ([worker] "
            "max_concurrent_flows) or behind a flow of the same instance.",
            registry=registry)
        self.quarantined = Gauge(
            "rescue_flow_quarantined_instances",
            "Instances on the quarantine list: a revert failed; "
            "'rescue-flow quarantined' lists them.",
            registry=registry)
        # Series that exist from the start read 0 instead of missing, so
        # rate() and alerts work before the first event.
        for source in (*SOURCES, "other"):
            self.requests_received.labels(source=source)
        for reason in REJECTED_REASONS:
            self.requests_rejected.labels(reason=reason)
        for kind in KINDS:
            for outcome in OUTCOMES:
                self.flows.labels(kind=kind, outcome=outcome)

    # Hooks ---------------------------------------------------------------

    def received(self, source: Any) -> None:
        self.requests_received.labels(
            source=source if source in SOURCES else "other").inc()

    def rejected(self, reason: str) -> None:
        self.requests_rejected.labels(reason=reason).inc()

    def flow_started(self, waited: float | None) -> None:
        self.flows_in_flight.inc()
        if waited is not None:
            self.request_wait.observe(max(waited, 0.0))

    def flow_ended(self, kind: str, outcome: str) -> None:
        self.flows_in_flight.dec()
        self.flows.labels(kind=kind, outcome=outcome).inc()

    def step(self, event: StepEvent) -> None:
        if event.seconds is not None and event.state in _TIMED_STATES:
            self.step_duration.labels(flow=event.flow, step=event.step).observe(
                event.seconds)

    def watch_quarantine(self, count: Callable[[], int]) -> None:
        """Read the number of quarantined instances on each scrape."""
        self.quarantined.set_function(_safely(count, "the quarantine list"))

    def watch_queue(self, waiting: Callable[[], int]) -> None:
        """Read the number of queued requests on each scrape."""
        self.requests_queued.set_function(_safely(waiting, "the flow queue"))


def _safely(read: Callable[[], int], what: str) -> Callable[[], float]:
    # A failed read must not fail the whole scrape: the gauge reads NaN.
    def value() -> float:
        try:
            return float(read())
        except Exception as exc:
            LOG.warning("Could not read %s for the metrics: %s", what, exc)
            return math.nan
    return value


class MetricsServer:
    """prometheus_client's HTTP server for one registry, on its own thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        # A "<name>_created" gauge beside every counter and histogram doubles
        # the series for a timestamp nobody here queries. The switch is
        # process-wide; the worker's process serves no other metrics.
        disable_created_metrics()
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port = int(self._server.server_port)  # the real one when port was 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
