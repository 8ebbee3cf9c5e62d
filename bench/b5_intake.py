"""B5: how fast the worker takes requests in, against a bare listener.

Both consume the same durable queue on the same RabbitMQ with the same
transport settings (``bus.rescue_transport``); N request messages are
put in the queue first, then the consumer starts, and its rate is counted
from its first message to its N-th:

- ``bare``: an oslo.messaging notification listener (default threading
  executor) whose endpoint counts each message and returns HANDLED (ack);
- ``worker``: a real :class:`rescue_flow.service.worker.Worker` (OrderedListener,
  RequestIntake, FlowQueue), whose intake records each request in the
  history (an fsynced SQLite insert) before the message may be acked. Its
  runner is a no-op: every flow finishes at once (recorded as finished,
  result notification sent), so only the intake is measured, while the
  worker does all its per-request work besides the flow.

Rounds alternate bare, worker, bare, worker, ...; goal: worker / bare >= 0.5.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import oslo_messaging

from bench import harness
from rescue_flow.messaging import bus, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.service.worker import Worker

GOAL = 0.5
GOAL_TEXT = f"worker intake rate / bare listener rate (median of rounds) >= {GOAL}"
HOST = "hv-b5"


class Counter:
    """Counts events and remembers when the first and the N-th happened."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = self.last = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first = now
            if self.count == self.target:
                self.last = now
                self.done.set()

    def rate(self) -> float:
        return (self.target - 1) / (self.last - self.first)


class CountingEndpoint:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any,
             metadata: Any) -> Any:
        self.counter.tick()
        return oslo_messaging.NotificationResult.HANDLED


class NoopRunner:
    """A runner whose flows end at once: what is left is the worker's own work."""

    def __init__(self, history: History, host: str) -> None:
        self.history = history
        self.host = host

    def execute(self, request: Request, on_step: Any = None) -> Result:
        result = Result(request_id=request.request_id, action=request.action,
                        instance_uuid=request.instance_uuid, host=self.host,
                        outcome=Outcome.NOTHING_TO_DO, reason="no-op host")
        self.history.finish(result)
        return result

    def resume(self, record: Any, on_step: Any = None) -> Result:
        return self.execute(record.request)


def fill_queue(router: protocol.Router, count: int) -> None:
    for _ in range(count):
        router.send(Request("rescue", str(uuid.uuid4()), harness.new_request_id(),
                            host=HOST))


def run_bare(conf: Any, count: int, timeout: float) -> float:
    counter = Counter(count)
    transport = bus.rescue_transport(conf)
    target = oslo_messaging.Target(
        exchange=conf.worker.exchange,
        topic=protocol.request_topic(conf.worker.requests_topic, HOST))
    listener = oslo_messaging.get_notification_listener(
        transport, [target], [CountingEndpoint(counter)], allow_requeue=False)
    listener.start()
    try:
        if not counter.done.wait(timeout):
            raise TimeoutError(f"bare listener took {counter.count} of {count} messages")
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    return counter.rate()


def run_worker(conf: Any, count: int, timeout: float) -> tuple[float, dict[str, int]]:
    counter = Counter(count)
    history = History.from_conf(conf)
    accept = history.accept

    def counted_accept(request: Request) -> Any:
        answer = accept(request)
        counter.tick()
        return answer

    history.accept = counted_accept  # type: ignore[method-assign]
    worker = Worker(conf, runner=NoopRunner(history, HOST), history=history)
    worker.start()
    try:
        if not counter.done.wait(timeout):
            raise TimeoutError(f"worker accepted {counter.count} of {count} requests")
    finally:
        worker.stop()
        worker.wait()
    return counter.rate(), dict(worker.handler.stats)


def run(ctx: harness.Context) -> dict[str, Any]:
    assert ctx.rabbit_url is not None
    count, rounds = (200, 1) if ctx.quick else (2000, 3)
    names = f"rf-bench-b5-{uuid.uuid4().hex[:8]}"
    figures: dict[str, Any] = {}
    for concurrency in ((4,) if ctx.quick else (4, 32)):
        conf = harness.make_conf(ctx.folder(f"b5-{concurrency}"), host=HOST,
                                 url=ctx.rabbit_url, names=names,
                                 nova={"enabled": False},
                                 worker={"max_concurrent_flows": concurrency})
        transport = bus.rescue_transport(conf)
        router = protocol.Router(bus.Publisher(transport, conf.worker.exchange,
                                                     "rescue-flow:bench"),
                                 conf.worker.requests_topic)
        rates: dict[str, list[float]] = {"bare": [], "worker": []}
        stats: dict[str, int] = {}
        try:
            with harness.quiet():
                for _ in range(rounds):
                    fill_queue(router, count)
                    rates["bare"].append(run_bare(conf, count, timeout=120))
                    fill_queue(router, count)
                    rate, stats = run_worker(conf, count, timeout=300)
                    rates["worker"].append(rate)
        finally:
            transport.cleanup()
            queues, exchanges = harness.broker_names(conf, [HOST])
            harness.delete_broker_objects(ctx.rabbit_url, queues, exchanges)
        bare = sorted(rates["bare"])[len(rates["bare"]) // 2]
        worker = sorted(rates["worker"])[len(rates["worker"]) // 2]
        figures[f"max_concurrent_flows_{concurrency}"] = {
            "messages_per_round": count, "rounds": rounds,
            "bare_per_s": [round(r, 1) for r in rates["bare"]],
            "worker_per_s": [round(r, 1) for r in rates["worker"]],
            "bare_median_per_s": round(bare, 1),
            "worker_median_per_s": round(worker, 1),
            "ratio": round(worker / bare, 3),
            "last_worker_stats": stats,
        }
    headline = figures["max_concurrent_flows_4"]
    ratio = headline["ratio"]
    return {
        "figures": figures,
        "ratio": ratio,
        "goal": f"{GOAL_TEXT} (default max_concurrent_flows 4)",
        "met": harness.verdict(ratio, GOAL, ">="),
        "summary": f"worker {headline['worker_median_per_s']:.0f}/s vs bare "
                   f"{headline['bare_median_per_s']:.0f}/s",
    }
