"""Real Nova (API, conductor, scheduler, compute in one process, as Nova's own
functional tests run it) beside a real rescue-flow worker process, on a real
RabbitMQ and a simulated Hyper-V host.

What is real and what is not:

- Nova 27.5.1's code, from .venv-nova: ``nova.tests.functional.integrated_helpers``
  starts the API (wsgi-intercept), conductor, scheduler, placement and one
  compute service whose driver is ``compute_driver``. Nova's own RPC between
  them stays on oslo.messaging's in-process ``fake://`` transport, as in
  Nova's functional tests.
- Nova's notifications go to the real broker: ``nova.rpc.NOTIFIER`` and
  ``nova.rpc.LEGACY_NOTIFIER`` become real ``oslo_messaging.Notifier``s
  (``messagingv2``, exchange ``nova``) for the formats that
  ``[notifications] notification_format`` enables, as ``nova.rpc.init``
  makes them. The test base's fake notifiers still get a copy, so Nova's
  helpers that wait for a versioned notification keep working.
- The worker is ``rescue-flow worker`` in its own environment, as a separate
  process (``rfworker.WorkerFixture``), on a simulated host in the test's
  temp folder.

The broker is ``$RESCUE_FLOW_RABBIT_URL`` (else
``rabbit://guest:guest@127.0.0.1:5672/``). Without one the tests skip, unless
``CI`` is set: then they fail (the main suite's rule, tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fixtures
import kombu
import oslo_messaging
import testtools.content
from nova import conf as nova_conf
from nova import context as nova_context
from nova import rpc
from nova.tests.functional import integrated_helpers
from rfworker import WorkerFixture, amqp_url

CONF = nova_conf.CONF
DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
RESULT_TIMEOUT = 30.0
_BROKER: dict[str, str] = {}


def rabbit_url() -> str:
    return os.environ.get("RESCUE_FLOW_RABBIT_URL") or DEFAULT_RABBIT_URL


def broker_problem(url: str) -> str:
    """'' when the broker at ``url`` accepts a connection, else why not (cached)."""
    if url not in _BROKER:
        try:
            with kombu.Connection(amqp_url(url), connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
            _BROKER[url] = ""
        except Exception as exc:
            _BROKER[url] = f"no RabbitMQ at {url}: {exc}"
    return _BROKER[url]


class TeeNotifier:
    """A Nova notifier that sends on the real broker and to the test's fake.

    ``real`` is None for a format that Nova's config leaves off (Nova then
    builds a noop notifier; sending nothing is the same).
    """

    def __init__(self, fake: Any, real: Any | None, sent: list[Any] | None = None) -> None:
        self.fake = fake
        self.real = real
        # (notifier, priority, ctxt, event_type, payload) of each real send,
        # shared by every prepared copy: what a test may replay.
        self.sent = [] if sent is None else sent
        for priority in ("audit", "debug", "info", "warn", "warning", "error",
                         "critical", "sample"):
            setattr(self, priority, self._sender(priority))

    def _sender(self, priority: str) -> Callable[..., None]:
        def send(ctxt: Any, event_type: str, payload: Any) -> None:
            if self.real is not None:
                getattr(self.real, priority)(ctxt, event_type, payload)
                self.sent.append((self.real, priority, ctxt, event_type, payload))
            fake = getattr(self.fake, "warn" if priority == "warning" else priority, None)
            if fake is not None:
                fake(ctxt, event_type, payload)
        return send

    def prepare(self, publisher_id: str | None = None) -> TeeNotifier:
        return TeeNotifier(self.fake.prepare(publisher_id=publisher_id),
                           self.real.prepare(publisher_id=publisher_id)
                           if self.real is not None else None, self.sent)

    def is_enabled(self) -> bool:
        return True


class RealNotifiers(fixtures.Fixture):
    """Put Nova's notifications on the real broker, in ``fmt``
    (``both``, ``versioned`` or ``unversioned``), as nova.rpc.init would."""

    def __init__(self, test: Any, url: str, fmt: str) -> None:
        super().__init__()
        self.test = test
        self.url = url
        self.fmt = fmt

    def _setUp(self) -> None:
        # The exchange is read when the transport is made: set Nova's first
        # (set later, it would silently send to "openstack").
        oslo_messaging.set_transport_defaults("nova")
        transport = oslo_messaging.get_notification_transport(
            CONF, url=self.url, allowed_remote_exmods=rpc.get_allowed_exmods())
        self.addCleanup(transport.cleanup)
        serializer = rpc.RequestContextSerializer(rpc.JsonPayloadSerializer())

        def notifier(topics: list[str]) -> oslo_messaging.Notifier:
            # retry=3: a broker that went away fails the action, never hangs it.
            return oslo_messaging.Notifier(transport, driver="messagingv2",
                                           serializer=serializer, topics=topics, retry=3)

        legacy = versioned = None
        if self.fmt in ("unversioned", "both"):
            legacy = notifier(list(CONF.oslo_messaging_notifications.topics))
        if self.fmt in ("versioned", "both"):
            versioned = notifier(list(CONF.notifications.versioned_notifications_topics))
        self.test.flags(notification_format=self.fmt, group="notifications")
        self.test.flags(driver=["messagingv2"], group="oslo_messaging_notifications")
        self.legacy = TeeNotifier(rpc.LEGACY_NOTIFIER, legacy)
        self.versioned = TeeNotifier(rpc.NOTIFIER, versioned)
        self.test.stub_out("nova.rpc.LEGACY_NOTIFIER", self.legacy)
        self.test.stub_out("nova.rpc.NOTIFIER", self.versioned)

    def sent(self, event_type: str) -> list[Any]:
        """What Nova put on the broker with this event type, oldest first."""
        return [entry for tee in (self.legacy, self.versioned) for entry in tee.sent
                if entry[3] == event_type]

    @staticmethod
    def replay(entry: Any) -> None:
        """Send one of Nova's notifications again, unchanged (a duplicate)."""
        notifier, priority, ctxt, event_type, payload = entry
        getattr(notifier, priority)(ctxt, event_type, payload)


class ResultTap(fixtures.Fixture):
    """Every result the worker publishes (``rescue_flow.*.end|error`` and
    steps), from an exclusive queue bound before anything is sent."""

    def __init__(self, worker: WorkerFixture) -> None:
        super().__init__()
        self.worker = worker
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _setUp(self) -> None:
        opts = self.worker.options()["worker"]
        # Declared exactly as the worker (oslo.messaging) declares its exchange.
        exchange = kombu.Exchange(opts["exchange"], type="topic", durable=True,
                                  auto_delete=False)
        queue = kombu.Queue(f"{opts['results_topic']}-tap-{uuid.uuid4().hex[:8]}",
                            exclusive=True, auto_delete=True,
                            bindings=[kombu.binding(exchange,
                                                    routing_key=f"{opts['results_topic']}.{p}")
                                      for p in ("info", "error")])
        self.connection = kombu.Connection(amqp_url(self.worker.transport_url),
                                           connect_timeout=10)
        self.addCleanup(self.connection.release)
        consumer = kombu.Consumer(self.connection.channel(), queues=[queue],
                                  callbacks=[self._on_message], no_ack=True,
                                  accept=["json"])
        consumer.consume()

    def _on_message(self, body: Any, message: Any) -> None:
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        if "oslo.message" in body:
            body = json.loads(body["oslo.message"])
        with self._lock:
            self.messages.append(body)

    def poll(self, seconds: float = 0.0) -> None:
        """Take what arrived, waiting up to ``seconds`` for something."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                left = deadline - time.monotonic()
                self.connection.drain_events(timeout=max(0.01, min(0.2, left)))
            except (TimeoutError, OSError):
                pass
            else:
                continue  # more may be waiting
            if time.monotonic() >= deadline:
                return

    def results(self, instance_uuid: str | None = None,
                action: str | None = None) -> list[dict[str, Any]]:
        """End and error results (not steps), oldest first: their payloads."""
        with self._lock:
            found = [m["payload"] for m in self.messages
                     if not m.get("event_type", "").endswith(".step")]
        return [p for p in found
                if (instance_uuid is None or p.get("instance_uuid") == instance_uuid)
                and (action is None or p.get("action") == action)]

    def wait(self, instance_uuid: str, action: str, count: int = 1,
             timeout: float = RESULT_TIMEOUT) -> dict[str, Any]:
        """The ``count``-th result for ``action`` on the instance (waits for it)."""
        deadline = time.monotonic() + timeout
        while len(self.results(instance_uuid, action)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {action} result #{count} for {instance_uuid} within {timeout}s; "
                    f"results so far: {self.results()}\n--- worker log ---\n"
                    f"{self.worker.log()[-6000:]}")
            self.poll(0.2)
        return self.results(instance_uuid, action)[count - 1]


class RescueFlowNovaTestCase(integrated_helpers.ProviderUsageBaseTestCase):
    """Nova with one compute host, ``self.host``, whose rescue-flow worker
    (``self.worker``, its simulated host ``self.sim``) runs beside it.

    Class attributes to override: ``compute_driver``, ``notification_format``,
    ``worker_options`` ({group: {option: value}}), ``start_worker``.
    """

    compute_driver = "fake.MediumFakeDriver"
    notification_format = "both"
    worker_options: dict[str, dict[str, Any]] = {}
    start_worker = True
    # Nova's default image in its GlanceFixture, which servers boot from.
    image_id = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
    generation = 2

    def setUp(self) -> None:
        self.rabbit_url = rabbit_url()
        problem = broker_problem(self.rabbit_url)
        if problem:
            if os.environ.get("CI"):
                self.fail(f"{problem} (CI is set, so this is an error)")
            self.skipTest(problem)
        super().setUp()
        self.host = f"rfnova-{uuid.uuid4().hex[:8]}"
        self.nova_notifications = self.useFixture(
            RealNotifiers(self, self.rabbit_url, self.notification_format))
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.worker = self.useFixture(WorkerFixture(
            tmp / "worker", self.host, self.rabbit_url, self.worker_options_for_test()))
        self.addOnException(self._attach_worker_log)
        self.sim = self.worker.sim
        self.results = self.useFixture(ResultTap(self.worker))
        if self.start_worker:
            self.worker.start()
        self.before_compute()
        self.compute = self._start_compute(self.host)

    def before_compute(self) -> None:
        """Hook: runs after the worker started, before Nova's compute does."""

    def worker_options_for_test(self) -> dict[str, dict[str, Any]]:
        return {group: dict(values) for group, values in self.worker_options.items()}

    def _clear_attrs(self) -> None:
        # Nova's base deletes every public attribute after a test to save
        # memory; under pytest that includes attributes pytest still reads.
        # A few dozen tests do not need the memory back.
        pass

    def _attach_worker_log(self, exc_info: Any) -> None:
        worker = getattr(self, "worker", None)
        if worker is not None:
            self.addDetail("rescue-flow-worker-log",
                           testtools.content.text_content(worker.log()[-20000:]))
            print("--- rescue-flow worker log (tail) ---\n" + worker.log()[-8000:])

    # -- Nova side -----------------------------------------------------------

    def boot_server(self, seed: bool = True, **seed_kwargs: Any) -> dict[str, Any]:
        """Boot a server on ``self.host`` and (``seed``) give it its VM on the
        simulated host; returns the server as the admin API shows it."""
        server = self._create_server(networks="none", image_uuid=self.image_id)
        server = self.api.get_server(server["id"])
        if seed:
            self.seed_vm(server, **seed_kwargs)
        return server

    def seed_vm(self, server: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("nics", 1)
        return self.sim.add_vm(self.instance_name(server), server["id"], self.image_id,
                               generation=self.generation, **kwargs)

    @staticmethod
    def instance_name(server: dict[str, Any]) -> str:
        return server["OS-EXT-SRV-ATTR:instance_name"]

    def nova_view(self, server: dict[str, Any]) -> dict[str, Any]:
        """What Nova says: status, vm_state, task_state, power_state, fault."""
        server = self.api.get_server(server["id"])
        return {
            "status": server["status"],
            "vm_state": server["OS-EXT-STS:vm_state"],
            "task_state": server["OS-EXT-STS:task_state"],
            "power_state": server["OS-EXT-STS:power_state"],
            "fault": (server.get("fault") or {}).get("message"),
        }

    def wait_for_nova(self, server: dict[str, Any], status: str,
                      timeout: float = RESULT_TIMEOUT) -> dict[str, Any]:
        """Wait until the server's status is ``status`` and its task_state is None."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.nova_view(server)
            if view["status"] == status and view["task_state"] is None:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"server {server['id']} not {status} within "
                                     f"{timeout}s: {view}\n--- worker log ---\n"
                                     f"{self.worker.log()[-6000:]}")
            time.sleep(0.1)

    def admin_context(self) -> Any:
        return nova_context.get_admin_context()

    # -- host side -------------------------------------------------------------

    def host_vm(self, server: dict[str, Any], view: dict[str, Any] | None = None,
                rescue: bool = False) -> dict[str, Any] | None:
        """The server's VM (or its rescue VM) on the simulated host, or None."""
        name = self.instance_name(server) + ("-rescue" if rescue else "")
        return (view or self.sim.view())["vms"].get(name)

