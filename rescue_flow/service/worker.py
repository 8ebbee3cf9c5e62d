"""The worker: records this host's requests, runs their flows, reports results.

Delivery, from the worker's side (see :mod:`rescue_flow.listener` for the
intake on Nova's exchange):

1. One listener on ``<[worker] requests_topic>.<[DEFAULT] host>`` hands each
   message to :class:`RequestIntake` (:mod:`.request_intake`), one at a time
   per instance in arrival order. The intake records the request in the history (a fsynced insert)
   and only then lets the message be acknowledged. A request id recorded
   before is not run again; if it finished, its result is sent again (the
   first notification may never have gone out).
2. :class:`FlowQueue` (:mod:`.flow_queue`) runs recorded requests, in
   arrival order per instance and up to ``[worker] max_concurrent_flows``
   instances at once, from the history: a flow's steps are persisted as it
   goes.
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
from typing import Any

from rescue_flow import hyperv, listener
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.messaging import bus, protocol
from rescue_flow.persistence.history import History
from rescue_flow.service.driver_presence import DriverPresence
from rescue_flow.service.flow_queue import FlowQueue
from rescue_flow.service.metrics import Metrics, MetricsServer
from rescue_flow.service.request_intake import RequestIntake

LOG = logging.getLogger(__name__)

PURGE_INTERVAL = 24 * 3600.0


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
