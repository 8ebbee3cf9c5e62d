"""TLS to the worker's broker: kombu's ``ssl`` argument as oslo.messaging makes it.

Each nova.conf option and URL query maps as in oslo.messaging's rabbit
driver, checked both against expected values and against that driver's own
``_fetch_ssl_params`` (oslo.messaging 14.2.5 in .venv-nova); the real TLS
broker is in tests/integration/test_worker_link.py.
"""

from __future__ import annotations

import ssl
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

import oslo_messaging
import pytest
from nova.compute import vm_states
from nova.conf import CONF
from oslo_config import cfg
from oslo_messaging import opts as om_opts
from oslo_messaging._drivers import common as om_common
from oslo_messaging._drivers import impl_rabbit
from test_driver import Driver, context, instance

from rescue_flow_nova import conf as rf_conf
from rescue_flow_nova import driver, link

RABBIT = "oslo_messaging_rabbit"
URL = "rabbit://nova:secret@mq1:5672/"


@pytest.fixture(autouse=True)
def tls_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """ca.pem, c.pem and k.pem, readable, in the current folder: the TLS
    files the cases name (a file that is not there is its own error)."""
    for name in ("ca.pem", "c.pem", "k.pem", "other-ca.pem", "rabbit-ca.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def a_conf(**rabbit: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="nova", default_config_files=[])
    link.register_rabbit_opts(conf)
    for name, value in rabbit.items():
        conf.set_override(name, value, group=RABBIT)
    return conf


def oslo_messagings_params(conf: cfg.ConfigOpts, url: str) -> Any:
    """What oslo.messaging's rabbit driver gives kombu for this conf and URL:
    its Connection reads the options through ConfigOptsProxy (URL query over
    nova.conf), then _fetch_ssl_params; without connecting anywhere."""
    rabbit = om_common.ConfigOptsProxy(
        conf, oslo_messaging.TransportURL.parse(conf, url), RABBIT)[RABBIT]
    connection = types.SimpleNamespace(
        ssl=rabbit.ssl, ssl_version=rabbit.ssl_version, ssl_key_file=rabbit.ssl_key_file,
        ssl_cert_file=rabbit.ssl_cert_file, ssl_ca_file=rabbit.ssl_ca_file,
        validate_ssl_version=impl_rabbit.Connection.validate_ssl_version)
    return impl_rabbit.Connection._fetch_ssl_params(connection)


CASES = [
    # (nova.conf [oslo_messaging_rabbit], transport URL, kombu's ssl)
    ({}, URL, False),
    ({"ssl_ca_file": "ca.pem", "ssl_version": "nonsense"}, URL, False),
    ({"ssl": True}, URL, True),
    ({"ssl": True, "ssl_ca_file": "ca.pem"}, URL,
     {"ca_certs": "ca.pem", "cert_reqs": ssl.CERT_REQUIRED}),
    ({"ssl": True, "ssl_cert_file": "c.pem", "ssl_key_file": "k.pem"}, URL,
     {"certfile": "c.pem", "keyfile": "k.pem"}),
    ({"ssl": True, "ssl_version": "TLSv1_2", "ssl_ca_file": "ca.pem",
      "ssl_cert_file": "c.pem", "ssl_key_file": "k.pem"}, URL,
     {"ssl_version": ssl.PROTOCOL_TLSv1_2, "ca_certs": "ca.pem",
      "cert_reqs": ssl.CERT_REQUIRED, "certfile": "c.pem", "keyfile": "k.pem"}),
    ({"ssl": True, "ssl_version": "sslv23"}, URL, {"ssl_version": ssl.PROTOCOL_SSLv23}),
    # The URL's query overrides nova.conf, converted as the option's type.
    ({}, URL + "?ssl=1", True),
    ({}, URL + "?ssl=true", True),
    ({"ssl": True}, URL + "?ssl=0", False),
    ({"ssl_ca_file": "ca.pem"}, URL + "?ssl=1",
     {"ca_certs": "ca.pem", "cert_reqs": ssl.CERT_REQUIRED}),
    ({"ssl": True, "ssl_ca_file": "ca.pem"}, URL + "?ssl_ca_file=other-ca.pem",
     {"ca_certs": "other-ca.pem", "cert_reqs": ssl.CERT_REQUIRED}),
    ({}, "rabbit://nova:secret@mq1:5672,nova:secret@mq2:5672/vh?ssl=1&ssl_version=tlsv1_2",
     {"ssl_version": ssl.PROTOCOL_TLSv1_2}),
]


@pytest.mark.parametrize("rabbit, url, expected", CASES)
def test_each_option_maps_as_oslo_messaging_maps_it(
        rabbit: dict[str, Any], url: str, expected: Any) -> None:
    conf = a_conf(**rabbit)
    got = link.kombu_ssl(conf, url)
    assert got == expected
    assert type(got) is type(expected)  # True is not {}, False is not None
    assert got == oslo_messagings_params(conf, url)


def test_without_a_url_nova_computes_default_transport_url_counts() -> None:
    conf = a_conf(ssl=True)
    conf.register_opts(dict(om_opts.list_opts())[None])
    conf.set_override("transport_url", URL + "?ssl=0")
    assert link.kombu_ssl(conf, None) is False


@pytest.mark.parametrize("rabbit, url, says", [
    ({"ssl": True, "ssl_version": "TLSv9"}, URL,
     "invalid [oslo_messaging_rabbit] ssl_version 'TLSv9': this Python offers "),
    ({"ssl": True}, URL + "?ssl_version=tls1.2",
     "invalid the transport URL's ssl_version 'tls1.2': this Python offers "),
])
def test_an_unknown_ssl_version_is_a_clear_error_like_oslo_messagings(
        rabbit: dict[str, Any], url: str, says: str) -> None:
    conf = a_conf(**rabbit)
    with pytest.raises(link.InvalidBrokerSettings) as caught:
        link.kombu_ssl(conf, url)
    assert str(caught.value).startswith(says) and "tlsv1_2" in str(caught.value)
    with pytest.raises(RuntimeError, match="Invalid SSL version"):
        oslo_messagings_params(conf, url)


def test_a_bad_ssl_value_in_the_url_is_refused_as_oslo_messaging_refuses_it() -> None:
    # A WorkerUnavailable: Nova's fault says "host unchanged", and the rescue
    # config drive is removed, as for any request that was not sent.
    with pytest.raises(link.InvalidBrokerSettings, match=r"invalid TLS setting in the "
                       r"transport URL: .*perhaps"):
        link.kombu_ssl(a_conf(), URL + "?ssl=perhaps")
    with pytest.raises(ValueError):  # as oslo.messaging's own reading
        oslo_messagings_params(a_conf(), URL + "?ssl=perhaps")


def test_the_port_stays_5672_with_tls_as_oslo_messaging_writes_it() -> None:
    """oslo.messaging gives kombu ``host.port or 5672`` whatever ``ssl`` says,
    so kombu's TLS default port (5671, only for a URL without one) never
    applies: a TLS broker's URL names its port."""
    conf = a_conf(ssl=True)
    url = "rabbit://nova:secret@mq1/"
    assert link.kombu_url(conf, url) == "amqp://nova:secret@mq1:5672/"
    assert impl_rabbit.Connection._transform_transport_url(
        mock.Mock(_parse_url_hostname=lambda host: host),
        oslo_messaging.TransportURL.parse(conf, url),
        oslo_messaging.TransportURL.parse(conf, url).hosts[0]).endswith("@mq1:5672/")


def test_the_options_are_oslo_messagings_own_in_either_order() -> None:
    """nova-compute's rabbit transport registers the same options when it
    loads, before or after the driver: neither may conflict."""
    before = a_conf(ssl=True)
    transport = oslo_messaging.get_rpc_transport(before, URL)
    try:
        assert link.kombu_ssl(before, URL) is True
    finally:
        transport.cleanup()

    after = cfg.ConfigOpts()
    after([], project="nova", default_config_files=[])
    oslo_messaging.get_rpc_transport(after, URL).cleanup()
    after.set_override("ssl_ca_file", "ca.pem", group=RABBIT)
    assert link.kombu_ssl(after, URL + "?ssl=1")["ca_certs"] == "ca.pem"


def test_the_link_hands_kombu_its_ssl_argument() -> None:
    params = {"ca_certs": "ca.pem", "cert_reqs": ssl.CERT_REQUIRED}
    worker_link = link.WorkerLink("amqp://u:p@mq1:5672/", "rescue_flow", "req", "res",
                                  "hv-01", ssl=params)
    assert worker_link._connection().ssl == params
    plain = link.WorkerLink("amqp://u:p@mq1:5672/", "rescue_flow", "req", "res", "hv-01")
    assert plain._connection().ssl is False


@pytest.fixture
def nova_conf() -> Iterator[Any]:
    """nova-compute's CONF with what its rabbit transport registers when it
    loads: [DEFAULT] transport_url and friends, [oslo_messaging_rabbit]."""
    for group, opts in om_opts.list_opts():
        if group is None:
            CONF.register_opts(opts)
    link.register_rabbit_opts(CONF)
    rf_conf.register_opts(CONF)
    yield CONF
    for name in link._SSL_OPTIONS:
        CONF.clear_override(name, group=RABBIT)
    CONF.clear_override("transport_url", group="rescue_flow")
    CONF.clear_override("transport_url")


def test_the_driver_connects_with_nova_computes_tls_settings(nova_conf: Any) -> None:
    nova_conf.set_override("ssl_ca_file", "rabbit-ca.pem", group=RABBIT)
    nova_conf.set_override("transport_url", "rabbit://nova:secret@mq1:5671/?ssl=1")
    drv = Driver(mock.sentinel.virtapi)
    worker_link = drv._rescue_flow_link("hv-02")
    assert (worker_link.url, worker_link.ssl, worker_link.host) == (
        "amqp://nova:secret@mq1:5671/",
        {"ca_certs": "rabbit-ca.pem", "cert_reqs": ssl.CERT_REQUIRED}, "hv-02")
    # [rescue_flow] transport_url: its own query, nova.conf's options.
    nova_conf.set_override("transport_url", "rabbit://rf:pw@mq2:5672/", group="rescue_flow")
    assert drv._rescue_flow_link().ssl is False


def test_a_bad_ssl_version_fails_the_unrescue_with_the_host_unchanged(
        nova_conf: Any, vm_utils: Any) -> None:
    nova_conf.set_override("ssl", True, group=RABBIT)
    nova_conf.set_override("ssl_version", "TLSv9", group=RABBIT)
    nova_conf.set_override("transport_url", URL)
    drv = Driver(mock.sentinel.virtapi)
    drv._rescue_flow_vmutils = lambda: vm_utils  # type: ignore[method-assign]
    with pytest.raises(driver.RescueFlowFailed,
                       match=r"^invalid \[oslo_messaging_rabbit\] ssl_version 'TLSv9': .*; "
                       r"host unchanged$"):
        drv.unrescue(context(), instance(vm_state=vm_states.RESCUED))


def test_a_tls_file_nova_compute_cannot_read_is_a_clear_broker_setting_error() -> None:
    # Not a TLS handshake failing with an errno that names no option.
    with pytest.raises(link.InvalidBrokerSettings, match=r"^\[oslo_messaging_rabbit\] "
                       r"ssl_cert_file: no file nova-compute can read at '/.*/missing.pem'$"):
        link.kombu_ssl(a_conf(ssl=True, ssl_cert_file="missing.pem"), URL)
    with pytest.raises(link.InvalidBrokerSettings, match="the transport URL's ssl_ca_file"):
        link.kombu_ssl(a_conf(), URL + "?ssl=1&ssl_ca_file=missing.pem")
