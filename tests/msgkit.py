"""Helpers for the messaging tests: Nova's samples, confs, seeded simulated
hosts, Nova-shaped publishing and a collector of result notifications.

Importable from every test folder (tests/ is on sys.path through its
conftest.py). Names that a broker keeps (exchanges, topics, pools) come from
the caller, so that tests never see each other's messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
from oslo_context.context import RequestContext

from rescue_flow import config
from rescue_flow.commands import demo_loop
from rescue_flow.commands.demo_loop import nova_notifier
from rescue_flow.messaging import bus
from rescue_flow.messaging.client import results_queue
from rescue_flow.simhost import SimulatedHost

SAMPLES = Path(__file__).parent / "fixtures" / "nova_samples"
GEN1_IMAGE = "5d2a5c1e-0c1b-4f4e-9d3a-6a1f2b3c4d01"
GEN2_IMAGE = "8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a02"
NOVA_SAMPLE_UUID = "178b0921-8f85-4257-88b6-2e743b5a975c"


# -- Nova's samples -------------------------------------------------------------

def resolve_refs(obj: Any, base: Path) -> Any:
    """Expand "$ref"s as nova/tests/json_ref.py does: load the file, then
    apply the sibling keys as recursive overrides."""
    if isinstance(obj, list):
        return [resolve_refs(item, base) for item in obj]
    if not isinstance(obj, dict):
        return obj
    if "$ref" not in obj:
        return {key: resolve_refs(value, base) for key, value in obj.items()}
    path = base / obj["$ref"].partition("#")[0]
    resolved = resolve_refs(json.loads(path.read_text()), path.parent)
    overrides = resolve_refs({k: v for k, v in obj.items() if k != "$ref"}, base)
    _merge(resolved, overrides)
    return resolved


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def sample_files() -> list[Path]:
    """Every notification sample (not the common payload fragments)."""
    return sorted(path for path in SAMPLES.rglob("*.json")
                  if "common_payloads" not in path.parts)


def load_sample(path: Path) -> dict[str, Any]:
    return resolve_refs(json.loads(path.read_text()), path.parent)


def versioned_event(name: str, instance_uuid: str, host: str, image_id: str | None,
                    generation: str = "") -> tuple[str, dict[str, Any], str]:
    """(event type, payload, Nova request id) from a real sample, rewritten;
    ``generation`` "pre_shares_2024.1" picks the Hyper-V era's payloads."""
    notification = load_sample(SAMPLES / generation / "resolved" / name)
    return demo_loop.rewrite_versioned(notification, instance_uuid, host, image_id)


def legacy_event(action: str, instance_uuid: str, host: str,
                 image_id: str) -> tuple[str, dict[str, Any], str]:
    from rescue_flow.commands.demo_loop import legacy_event as build

    return build(action, instance_uuid, host, image_id)


def nova_context(request_id: str) -> RequestContext:
    """What Nova passes: an oslo.context context (the Notifier drops dicts)."""
    return RequestContext(request_id=request_id)


# -- configuration and hosts -----------------------------------------------------

def make_conf(folder: str, host: str, url: str, names: str, **groups: dict[str, Any]) -> Any:
    """A worker's conf: simulated host in ``folder``, own names on the broker."""
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"host": host, "state_path": os.path.join(folder, "state")},
        "hyperv": {"driver": "simulated", "instances_path": os.path.join(folder, "vms"),
                   "soft_shutdown_timeout": 1, "power_state_poll_interval": 0.01},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
        "worker": {"exchange": f"{names}-x", "requests_topic": f"{names}-requests",
                   "results_topic": f"{names}-results"},
        "nova": {"topics": [f"{names}-versioned_notifications", f"{names}-notifications"],
                 "pool": f"{names}-pool"},
    }
    for group, values in groups.items():
        overrides.setdefault(group, {}).update(values)
    conf = config.make_conf(overrides=overrides)
    bus.register_opts(conf)
    conf.set_override("transport_url", url)
    return conf


def seed_host(conf: Any, vms: int = 2) -> tuple[SimulatedHost, list[str]]:
    """Gen1 and Gen2 images, and ``vms`` instances alternating Gen1/Gen2."""
    sim = SimulatedHost.init(conf.simulated.state_file, conf.hyperv.instances_path)
    sim.add_image(GEN1_IMAGE, 1, "vhd")
    sim.add_image(GEN2_IMAGE, 2, "vhdx")
    uuids = []
    for index in range(vms):
        instance_uuid = str(uuid.uuid4())
        gen2 = index % 2 == 1
        sim.add_vm(f"instance-{index + 1:08x}", instance_uuid,
                   GEN2_IMAGE if gen2 else GEN1_IMAGE, nics=1 + index % 2)
        uuids.append(instance_uuid)
    return sim, uuids


@contextlib.contextmanager
def publishing_as_nova(conf: Any, host: str, legacy: bool = False) -> Iterator[Any]:
    """An oslo Notifier set up as nova-compute's (exchange, publisher, envelope 2.0)."""
    topic = conf.nova.topics[1 if legacy else 0]
    publisher = f"compute.{host}" if legacy else f"nova-compute:{host}"
    notifier = nova_notifier(conf, publisher, topic)
    try:
        yield notifier
    finally:
        notifier.transport.cleanup()


# -- results --------------------------------------------------------------------

class ResultLog:
    """Every notification on the results topic, from an exclusive queue bound
    before anything is sent (a test-side twin of the client's watcher)."""

    def __init__(self, conf: Any) -> None:
        self._connection, self._queue = results_queue(conf, "test-results")
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> ResultLog:
        self._consumer = kombu.Consumer(self._connection.channel(), queues=[self._queue],
                                        callbacks=[self._on_message], no_ack=True,
                                        accept=["json"])
        self._consumer.consume()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._connection.release()

    def _on_message(self, body: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(bus.unwrap(body))

    def results(self) -> list[dict[str, Any]]:
        """End and error notifications (not steps), oldest first."""
        with self._lock:
            return [m for m in self.messages if m["event_type"] != bus.STEP_EVENT]

    def wait_for(self, done: Callable[[ResultLog], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; results so far: {self.results()}")
            with contextlib.suppress(TimeoutError):
                self._connection.drain_events(timeout=min(left, 0.2))

    def wait_results(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        self.wait_for(lambda log: len(log.results()) >= count, timeout)
        return self.results()

    def result_for(self, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def found(log: ResultLog) -> bool:
            return any(m["payload"].get("request_id") == request_id for m in log.results())

        self.wait_for(found, timeout)
        return next(m for m in self.results() if m["payload"].get("request_id") == request_id)


# -- a real broker ----------------------------------------------------------------

def broker_names(conf: Any, hosts: list[str]) -> tuple[list[str], list[str]]:
    """(queues, exchanges) a test made with ``conf``, to delete afterwards.
    Nova's exchange is shared (and not durable): it is left alone."""
    topics = [f"{conf.worker.requests_topic}.{host}" for host in hosts]
    topics += [conf.worker.results_topic]
    queues = [f"{topic}.{p}" for topic in topics for p in ("info", "error")]
    queues.append(conf.nova.pool)
    return queues, [conf.worker.exchange]


def delete_broker_objects(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    """Best effort: leave nothing behind on a long-lived broker."""
    with contextlib.suppress(Exception), kombu.Connection(amqp_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in queues:
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
        for exchange in exchanges:
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)


def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (unacknowledged ones are not counted)."""
    with kombu.Connection(amqp_url, connect_timeout=5) as conn:
        return conn.channel().queue_declare(queue, passive=True).message_count


def drain_queue(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Take every message out of ``queue``, unwrapped (none if no such queue)."""
    taken: list[dict[str, Any]] = []
    with kombu.Connection(amqp_url, connect_timeout=5) as conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except conn.channel_errors:
            return taken
        channel = conn.channel()
        while True:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                return taken
            taken.append(bus.unwrap(message.body))


class UnwritableHistory:
    """A history whose every write fails with an unexpected error (not a
    storage error, which holds requests instead: test_storage_failures.py)."""

    def __init__(self) -> None:
        import sqlalchemy as sa

        from rescue_flow.persistence import schema

        # Reads work (what a worker reads at start); accept() is what fails.
        self.engine = sa.create_engine("sqlite://")
        schema.metadata.create_all(self.engine)

    def accept(self, request: Any) -> Any:
        raise RuntimeError("database or disk is full")

    def unfinished(self) -> list[Any]:
        return []

    def purge(self, older_than: Any) -> int:
        return 0

    def close(self) -> None:
        pass


def client_config_file(conf: Any, folder: Any, transport_url: str, host: str) -> str:
    """A config file equal to ``conf`` for what the client reads; returns its path."""
    path = folder / "client.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = {transport_url}\nhost = {host}\n"
        f"[worker]\nexchange = {conf.worker.exchange}\n"
        f"requests_topic = {conf.worker.requests_topic}\n"
        f"results_topic = {conf.worker.results_topic}\n")
    return str(path)
