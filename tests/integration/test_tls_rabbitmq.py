"""The worker's own kombu connections over TLS, on a broker that speaks only TLS.

``worker --check``'s broker check and the client's ``--wait`` queue connect
with kombu, not oslo.messaging: they take the TLS settings the worker's
oslo.messaging transports take (``bus.kombu_ssl``), here the CA file in
``[oslo_messaging_rabbit] ssl_ca_file`` and ``?ssl=1`` in the URL.
"""

from __future__ import annotations

from typing import Any

import pytest

from rescue_flow import config
from rescue_flow.messaging import bus, client, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.service import health

UUID = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01"


def tls_conf(url: str, ca: str, name: str) -> Any:
    conf = config.make_conf()
    bus.register_opts(conf)
    conf.set_override("transport_url", url)
    conf.set_override("ssl_ca_file", ca, group="oslo_messaging_rabbit")
    conf.set_override("exchange", name, group="worker")
    conf.set_override("results_topic", f"{name}-results", group="worker")
    return conf


def test_a_result_sent_over_tls_reaches_the_clients_watcher(
        rabbit_tls: tuple[str, str], unique_name: str) -> None:
    conf = tls_conf(*rabbit_tls, unique_name)
    transport = bus.rescue_transport(conf)  # oslo.messaging's own TLS
    try:
        with client.ResultWatcher(conf) as watcher:
            publisher = bus.Publisher(transport, conf.worker.exchange, "rescue-flow:tls-test")
            protocol.Results(publisher, conf.worker.results_topic).result(
                Result("r-tls", "rescue", UUID, "hv-tls", Outcome.SUCCESS))
            got = watcher.wait("r-tls", timeout=20)
    finally:
        transport.cleanup()
    assert (got.request_id, got.outcome) == ("r-tls", Outcome.SUCCESS)


def test_the_broker_check_connects_with_tls_only_when_the_settings_say_so(
        rabbit_tls: tuple[str, str]) -> None:
    url, ca = rabbit_tls
    conf = tls_conf(url, ca, "rescue_flow")
    assert health.check_broker(conf).startswith("amqp://guest:**@127.0.0.1:")
    # The same broker without ?ssl=1: plain AMQP, which a TLS port refuses.
    conf.set_override("transport_url", url.replace("?ssl=1", ""))
    with pytest.raises(health.CheckFailed, match=r"^cannot connect to amqp://guest:\*\*@"):
        health.check_broker(conf)
