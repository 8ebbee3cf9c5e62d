"""The broker fixture works: a notification goes through a real RabbitMQ.

A ``Notifier`` publishes on a topic of a private exchange; a notification
listener on that exchange and topic receives it. Everything is named after
``unique_name``, so runs never see each other's messages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import oslo_messaging
import pytest
from oslo_config import cfg

pytestmark = pytest.mark.rabbitmq


class _Endpoint:
    """Records ``info`` notifications; the method name is the priority."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict]] = []
        self.arrived = threading.Event()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.received.append((publisher_id, event_type, payload))
        self.arrived.set()


@pytest.fixture
def transport(rabbit_url: str, rabbit_amqp_url: str, unique_name: str,
              tmp_path) -> Iterator:
    # The Notifier publishes to [DEFAULT] control_exchange as read when the
    # transport is created; a config file read before that sets it on this
    # private conf only (set_transport_defaults would change the default for
    # every conf in the process, and set_override afterwards is ignored).
    conf_file = tmp_path / "broker-test.conf"
    conf_file.write_text(f"[DEFAULT]\ncontrol_exchange = {unique_name}\n")
    conf = cfg.ConfigOpts()
    conf([], project="rescue-flow-tests", default_config_files=[str(conf_file)])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbit_url)
    yield transport
    transport.cleanup()
    _delete_broker_objects(rabbit_amqp_url, exchange=unique_name,
                           queues=[f"{unique_name}.info"])


def _delete_broker_objects(amqp_url: str, exchange: str, queues: list[str]) -> None:
    """Best effort: leave nothing behind on a long-lived (laptop) broker."""
    import kombu

    # RabbitMQ deletes missing queues and exchanges without complaint.
    with contextlib.suppress(Exception), \
            kombu.Connection(amqp_url, connect_timeout=2) as conn:
        channel = conn.channel()
        for queue in queues:
            channel.queue_delete(queue)
        channel.exchange_delete(exchange)


def test_notification_round_trip(transport, unique_name: str) -> None:
    topic = unique_name
    endpoint = _Endpoint()
    listener = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic=topic, exchange=unique_name)],
        [endpoint],
    )
    listener.start()
    try:
        notifier = oslo_messaging.Notifier(
            transport, publisher_id="rescue-flow:test-host",
            driver="messagingv2", topics=[topic])
        payload = {"instance_uuid": "0b4cf2ba-5c3c-4bbd-a4a1-2f0e3e7c0b01",
                   "step": "round-trip"}
        notifier.info({}, "rescue_flow.test.round_trip", payload)
        assert endpoint.arrived.wait(timeout=20), "notification never arrived"
    finally:
        listener.stop()
        listener.wait()

    assert endpoint.received == [
        ("rescue-flow:test-host", "rescue_flow.test.round_trip", payload)]
