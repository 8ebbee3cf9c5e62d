"""``rescue-flow demo``: the whole loop in one process, with nothing to set up.

A simulated Hyper-V host in a temporary folder, an in-memory broker
(``kombu+memory://``: oslo.messaging's real rabbit driver on kombu's memory
transport), and a worker with its Nova intake. The demo publishes Nova's
notifications as nova-compute would (exchange ``nova``, envelope 2.0, the
real samples in ``rescue_flow/samples/`` from nova's
doc/notification_samples/, with uuid, host and image rewritten; the legacy
format built by hand, as it has no sample), follows each request through
the results topic, and checks what it shows. Exit 0 only if everything
behaved as expected, so it doubles as a smoke test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any

import oslo_messaging
from oslo_context.context import RequestContext

from rescue_flow import config
from rescue_flow.commands.run import print_step
from rescue_flow.messaging import bus, nova
from rescue_flow.messaging.client import ResultWatcher
from rescue_flow.outcome import Outcome, Result
from rescue_flow.service.worker import Worker
from rescue_flow.simhost import SimulatedHost

HOST = "hyperv-demo-1"
GEN1_IMAGE = "5d2a5c1e-0c1b-4f4e-9d3a-6a1f2b3c4d01"
GEN2_IMAGE = "8e7f6a5b-4c3d-4e2f-8a1b-0c9d8e7f6a02"
GEN1 = ("instance-00000001", "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01")
GEN2 = ("instance-00000002", "9b2d4e6f-1a3c-4b5d-8e7f-0a1b2c3d4e02")
# The second attach_drive of a rescue puts the instance's root disk on the
# rescue VM: failing it leaves five steps to revert.
FAULT = ("attach_drive", 1)


def load_sample(name: str) -> dict[str, Any]:
    """One of Nova's resolved notification samples shipped with the package."""
    text = resources.files("rescue_flow").joinpath("samples").joinpath(name).read_text("utf-8")
    return json.loads(text)


def versioned_event(sample: str, instance_uuid: str, host: str,
                    image_id: str | None) -> tuple[str, dict[str, Any], str]:
    """(event type, payload, Nova request id) from a real sample, rewritten."""
    return rewrite_versioned(load_sample(sample), instance_uuid, host, image_id)


def rewrite_versioned(notification: dict[str, Any], instance_uuid: str, host: str,
                      image_id: str | None) -> tuple[str, dict[str, Any], str]:
    """A Nova sample notification made about this instance, host and image."""
    payload = copy.deepcopy(notification["payload"])
    data = payload["nova_object.data"]
    request_id = f"req-{uuid.uuid4()}"
    data.update(uuid=instance_uuid, host=host, node=host, request_id=request_id)
    if image_id is not None:
        data["image_uuid"] = image_id
    if "rescue_image_ref" in data:
        data["rescue_image_ref"] = None  # rescue with the instance's own image
    return notification["event_type"], payload, request_id


def legacy_event(action: str, instance_uuid: str, host: str,
                 image_id: str) -> tuple[str, dict[str, Any], str]:
    """A legacy (unversioned) notification, as nova-compute sends it."""
    payload: dict[str, Any] = {
        "tenant_id": "6f70656e737461636b20342065766572", "user_id": "fake",
        "instance_id": instance_uuid, "display_name": "some-server", "host": host,
        "node": host, "state": "active" if action == "rescue" else "rescued",
        "state_description": "rescuing" if action == "rescue" else "unrescuing",
        "image_ref_url": f"http://glance.example.org:9292/images/{image_id}",
        "image_meta": {"base_image_ref": image_id, "hw_machine_type": "hyperv-gen2"},
        "fixed_ips": [],
    }
    if action == "rescue":
        payload["rescue_image_name"] = "cirros-rescue"
    return f"compute.instance.{action}.start", payload, f"req-{uuid.uuid4()}"


def nova_notifier(conf: Any, publisher_id: str, topic: str) -> oslo_messaging.Notifier:
    """A Notifier that publishes exactly as nova-compute does: Nova's
    exchange (``control_exchange``, fixed when the transport is created),
    Nova's durability, envelope 2.0."""
    derived = bus.derived_conf(conf, {
        "amqp_durable_queues": conf.nova.amqp_durable_queues, "amqp_auto_delete": False})
    derived.set_override("control_exchange", conf.nova.exchange)
    transport = oslo_messaging.get_notification_transport(derived,
                                                          url=conf.nova.transport_url)
    return oslo_messaging.Notifier(transport, publisher_id=publisher_id,
                                   driver="messagingv2", topics=[topic])


def demo_conf(folder: str) -> Any:
    conf = config.make_conf(overrides={
        "DEFAULT": {"host": HOST, "state_path": os.path.join(folder, "state")},
        # [hyperv] instances_path keeps its default (C:\OpenStack\Instances):
        # the simulated host is a Windows host, as in production.
        "hyperv": {"driver": "simulated",
                   "soft_shutdown_timeout": 1, "power_state_poll_interval": 0.01},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
        "worker": {"notify_steps": True},
    })
    bus.register_opts(conf)
    conf.set_override("transport_url", "kombu+memory:////")
    # kombu's memory transport has no heartbeats: oslo.messaging would warn
    # about it on every connection.
    conf.set_override("heartbeat_timeout_threshold", 0, group="oslo_messaging_rabbit")
    return conf


@dataclasses.dataclass
class Demo:
    conf: Any
    sim: SimulatedHost
    say: Callable[[str], None] = print
    problems: list[str] = dataclasses.field(default_factory=list)

    def expect(self, condition: bool, what: str) -> None:
        self.say(f"  check: {what}: {'ok' if condition else 'NOT AS EXPECTED'}")
        if not condition:
            self.problems.append(what)

    def show_host(self, title: str) -> None:
        self.say(f"\n--- host {HOST}: {title} ---")
        self.say(self.sim.view_text().rstrip())
        self.say("---")

    def nova_event(self, event: tuple[str, dict[str, Any], str], legacy: bool) -> Result:
        event_type, payload, nova_request_id = event
        publisher = f"compute.{HOST}" if legacy else f"nova-compute:{HOST}"
        topic = "notifications" if legacy else "versioned_notifications"
        # Nova passes its RequestContext (an oslo.context one); the Notifier
        # drops a plain dict context.
        context = RequestContext(request_id=nova_request_id)
        request = nova.parse({"event_type": event_type, "payload": payload},
                             {"request_id": nova_request_id})
        assert request is not None
        self.say(f"\n>>> {publisher} sends {event_type} ({'legacy' if legacy else 'versioned'})"
                 f" for {request.instance_uuid}")
        notifier = nova_notifier(self.conf, publisher, topic)
        try:
            with ResultWatcher(self.conf) as watcher:
                notifier.info(context, event_type, payload)
                result = watcher.wait(request.request_id, timeout=20, on_step=print_step)
        finally:
            notifier.transport.cleanup()
        line = f"<<< rescue_flow.{result.action}: {result.outcome.value}"
        self.say(line + (f": {result.reason}" if result.reason else ""))
        if result.reverted_steps:
            self.say(f"    reverted: {', '.join(result.reverted_steps)}")
        return result


def run(folder: str | None = None, say: Callable[[str], None] = print) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rescue-flow-demo-") as tmp:
        conf = demo_conf(folder or tmp)
        sim = SimulatedHost.init(conf.simulated.state_file, conf.hyperv.instances_path)
        sim.add_image(GEN1_IMAGE, 1, "vhd")
        sim.add_image(GEN2_IMAGE, 2, "vhdx")
        sim.add_vm(GEN1[0], GEN1[1], GEN1_IMAGE, generation=1, nics=1)
        sim.add_vm(GEN2[0], GEN2[1], GEN2_IMAGE, generation=2, nics=2)
        demo = Demo(conf, sim, say)
        demo.show_host("as seeded: a Gen1 and a Gen2 instance")
        before = sim.view()
        worker = Worker(conf)
        worker.start()
        try:
            _scenario(demo, before)
        finally:
            worker.stop()
            worker.wait()
    seconds = time.monotonic() - started
    if demo.problems:
        say(f"\ndemo: {len(demo.problems)} check(s) failed: {'; '.join(demo.problems)}")
        return 1
    say(f"\ndemo: every check passed in {seconds:.1f}s")
    return 0


def _scenario(demo: Demo, before: dict[str, Any]) -> None:
    gen1 = demo.nova_event(versioned_event("instance-rescue-start.json", GEN1[1], HOST,
                                           GEN1_IMAGE), legacy=False)
    demo.expect(gen1.outcome is Outcome.SUCCESS, "Gen1 instance rescued")
    gen2 = demo.nova_event(legacy_event("rescue", GEN2[1], HOST, GEN2_IMAGE), legacy=True)
    demo.expect(gen2.outcome is Outcome.SUCCESS, "Gen2 instance rescued")
    demo.show_host("both instances rescued: each has a running rescue VM")
    vms = demo.sim.view()["vms"]
    demo.expect(all(vms.get(f"{name}-rescue", {}).get("power_state") == "running"
                    for name, _ in (GEN1, GEN2)), "both rescue VMs are running")

    for (name, instance_uuid), legacy in ((GEN1, False), (GEN2, True)):
        event = (legacy_event("unrescue", instance_uuid, HOST, GEN2_IMAGE) if legacy else
                 versioned_event("instance-unrescue-start.json", instance_uuid, HOST, None))
        result = demo.nova_event(event, legacy=legacy)
        demo.expect(result.outcome is Outcome.SUCCESS, f"{name} unrescued")
    demo.show_host("after unrescue")
    demo.expect(demo.sim.view() == before, "host is exactly as seeded")

    method, after = FAULT
    demo.say(f"\n*** injecting a fault: call {after + 1} of {method} will fail")
    demo.sim.set_fault(method, "permanent", after=after, times=1)
    failed = demo.nova_event(versioned_event("instance-rescue-start.json", GEN1[1], HOST,
                                             GEN1_IMAGE), legacy=False)
    demo.sim.clear_faults()
    demo.expect(failed.outcome is Outcome.FAILED and bool(failed.reverted_steps),
                "the failed rescue was rolled back")
    demo.show_host("after the rollback")
    demo.expect(demo.sim.view() == before, "host is exactly as before the failed rescue")
