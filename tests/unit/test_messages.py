"""rescue-flow's own messages and transports, without a broker."""

from __future__ import annotations

import ssl
import types
from typing import Any
from unittest import mock

import oslo_messaging
import pytest
from oslo_messaging._drivers import common as om_common
from oslo_messaging._drivers import impl_rabbit

from rescue_flow import config, exceptions
from rescue_flow.messaging import bus, protocol
from rescue_flow.outcome import Outcome, Result
from rescue_flow.requests import Request
from rescue_flow.service import health

UUID = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01"


def _message(payload: Any, event_type: str = bus.REQUEST_EVENT) -> dict[str, Any]:
    return {"message_id": "m-1", "event_type": event_type, "payload": payload,
            "publisher_id": "rescue-flow-client:x", "priority": "INFO"}


def _request_payload(**changes: Any) -> dict[str, Any]:
    payload = dict(Request("rescue", UUID, "client-1", host="hv-1").to_dict(), progress=True)
    payload.update(changes)
    return payload


# -- requests on the wire ------------------------------------------------------

def test_a_request_survives_the_trip_through_its_payload() -> None:
    request, progress = protocol.request_from_message(_message(_request_payload()), "hv-1")
    assert request == Request("rescue", UUID, "client-1", host="hv-1")
    assert progress is True


def test_a_request_without_host_is_taken_as_for_this_host() -> None:
    request, _ = protocol.request_from_message(_message(_request_payload(host=None)), "hv-1")
    assert request.host == "hv-1"


BAD_REQUESTS = [
    ("not a request event", _message(_request_payload(), "rescue_flow.other"),
     "not a request"),
    ("payload a string", _message("rescue please"), "payload must be an object"),
    ("payload a list", _message([UUID]), "payload must be an object"),
    ("missing instance", _message({"action": "rescue", "request_id": "r"}), "missing"),
    ("unknown action", _message(_request_payload(action="reboot")), "action must be"),
    ("uuid not a UUID", _message(_request_payload(instance_uuid="vm-1")), "not a UUID"),
    ("uuid a number", _message(_request_payload(instance_uuid=7)), "UUID string"),
    ("image not a UUID", _message(_request_payload(image_id="../x")), "image id"),
    ("request id empty", _message(_request_payload(request_id="")), "request id"),
    ("request id a number", _message(_request_payload(request_id=5)), "request id"),
    ("generation 3", _message(_request_payload(image_generation=3)), "generation"),
    ("generation true", _message(_request_payload(image_generation=True)), "boolean"),
    ("another host's request", _message(_request_payload(host="hv-2")), "for host 'hv-2'"),
    ("progress a string", _message(_request_payload(progress="yes")), "progress must be"),
]


@pytest.mark.parametrize(("message", "says"), [(m, s) for _, m, s in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
def test_bad_request_messages_are_refused_with_a_clear_error(message, says) -> None:
    with pytest.raises(exceptions.InvalidRequest, match=says):
        protocol.request_from_message(message, "hv-1")


@pytest.mark.parametrize("host", ["hv-1", "hv1.example.org", "HV_2", "compute:1"])
def test_host_names_that_can_name_a_queue_are_accepted(host: str) -> None:
    assert bus.check_host_name(host) == host


@pytest.mark.parametrize("host", ["", "hv 1", "hv.*", "hv.#", "-hv", None, 3, "h" * 300])
def test_host_names_that_would_break_routing_are_refused(host: Any) -> None:
    with pytest.raises(exceptions.InvalidRequest, match="host must be"):
        bus.check_host_name(host)


def test_the_ordering_key_is_the_instance_or_nothing() -> None:
    assert protocol.instance_key(_message(_request_payload())) == UUID
    assert protocol.instance_key(_message(_request_payload(instance_uuid=UUID.upper()))) == UUID
    assert protocol.instance_key(_message("junk")) is None


# -- results ---------------------------------------------------------------------

def test_result_event_types() -> None:
    assert protocol.result_event_type("rescue", True) == "rescue_flow.rescue.end"
    assert protocol.result_event_type("unrescue", False) == "rescue_flow.unrescue.error"
    assert protocol.result_event_type(None, False) == "rescue_flow.request.error"


def test_a_result_survives_the_trip_through_its_payload() -> None:
    result = Result("r-1", "rescue", UUID, "hv-1", Outcome.FAILED, reason="boom",
                    failed_step="StopInstance", reverted_steps=["ValidateRescue"],
                    step_durations={"StopInstance": 0.5})
    assert Result.from_dict(result.to_dict()) == result


class _Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, str]] = []

    def send(self, topic, event_type, payload, priority="info", retry=None, context=None):
        self.sent.append((topic, event_type, payload, priority))


def test_errors_go_out_at_error_priority_and_successes_at_info() -> None:
    publisher = _Sent()
    results = protocol.Results(publisher, "rf-results")
    results.result(Result("r-1", "rescue", UUID, "hv-1", Outcome.SUCCESS))
    results.result(Result("r-2", "unrescue", UUID, "hv-1", Outcome.REFUSED, reason="no"))
    results.invalid("bad uuid", "hv-1", action="rescue", request_id="r-3", instance_uuid=5)
    assert [(t, e, p) for t, e, _, p in publisher.sent] == [
        ("rf-results", "rescue_flow.rescue.end", "info"),
        ("rf-results", "rescue_flow.unrescue.error", "error"),
        ("rf-results", "rescue_flow.rescue.error", "error")]
    invalid = publisher.sent[2][2]
    assert invalid["reason"] == "invalid request: bad uuid"
    assert (invalid["request_id"], invalid["instance_uuid"], invalid["outcome"]) == (
        "r-3", None, "refused")


# -- bounded attempts --------------------------------------------------------------

def test_a_failure_is_requeued_until_the_last_attempt_then_answered_and_dropped() -> None:
    attempts = protocol.BoundedRecord(100)
    given_up: list[str] = []

    def fail() -> None:
        raise RuntimeError("host unreachable")

    outcomes = [protocol.bounded_attempts(attempts, "m-1", 3, fail, given_up.append, "m-1")
                for _ in range(3)]
    assert outcomes == [bus.REQUEUE, bus.REQUEUE, bus.HANDLED]
    assert given_up == ["gave up after 3 attempts: host unreachable"]
    assert attempts.get("m-1") is None  # forgotten once answered


def test_a_success_after_failures_forgets_the_count() -> None:
    attempts = protocol.BoundedRecord(100)
    calls = iter([RuntimeError("once"), None])

    def flaky() -> Any:
        error = next(calls)
        if error:
            raise error
        return bus.HANDLED

    assert protocol.bounded_attempts(attempts, "m", 5, flaky, print, "m") == bus.REQUEUE
    assert protocol.bounded_attempts(attempts, "m", 5, flaky, print, "m") == bus.HANDLED
    assert attempts.get("m") is None


def test_the_record_forgets_the_oldest_first() -> None:
    record = protocol.BoundedRecord(2)
    for key in ("a", "b", "c"):
        record.put(key, key.upper())
    assert (record.get("a"), record.get("b"), record.get("c")) == (None, "B", "C")


# -- transports ------------------------------------------------------------------

def _conf() -> Any:
    conf = config.make_conf()
    bus.register_opts(conf)
    return conf


def test_our_transport_is_durable_and_keeps_the_operators_rabbit_options() -> None:
    conf = _conf()
    conf.set_override("heartbeat_timeout_threshold", 17, group="oslo_messaging_rabbit")
    derived = bus.derived_conf(conf, {"amqp_durable_queues": True})
    assert derived.oslo_messaging_rabbit.amqp_durable_queues is True
    assert derived.oslo_messaging_rabbit.heartbeat_timeout_threshold == 17
    assert conf.oslo_messaging_rabbit.amqp_durable_queues is False  # untouched


def test_the_nova_transport_takes_novas_durability(monkeypatch) -> None:
    conf = _conf()
    conf.set_override("amqp_durable_queues", True, group="nova")
    conf.set_override("transport_url", "rabbit://u:p@nova-mq:5672/")
    built = {}

    def fake(derived, url=None):
        built.update(durable=derived.oslo_messaging_rabbit.amqp_durable_queues,
                     quorum=derived.oslo_messaging_rabbit.rabbit_quorum_queue, url=url)

    monkeypatch.setattr(oslo_messaging, "get_notification_transport", fake)
    conf.set_override("rabbit_quorum_queue", True, group="oslo_messaging_rabbit")
    bus.nova_transport(conf)
    assert built == {"durable": True, "quorum": False, "url": None}


@pytest.mark.parametrize(("url", "kombu"), [
    ("rabbit://guest:guest@127.0.0.1:5673/", "amqp://guest:guest@127.0.0.1:5673/"),
    ("rabbit://u:p%40ss@a:5672,u:p%40ss@b:5672/vh",
     "amqp://u:p%40ss@a:5672/vh;amqp://u:p%40ss@b:5672/vh"),
    ("kombu+memory:////", "memory:///"),
])
def test_kombu_urls_follow_the_transport_url(url: str, kombu: str) -> None:
    conf = _conf()
    conf.set_override("transport_url", url)
    assert bus.kombu_url(conf) == kombu


URL = "rabbit://rf:secret@mq1:5672/"


@pytest.fixture(autouse=True)
def tls_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """ca.pem, c.pem and k.pem, readable, in the current folder: the TLS
    files the cases name (a file that is not there is its own error)."""
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _oslo_messagings_params(conf: Any, url: str) -> Any:
    """What the worker's oslo.messaging gives kombu for this conf and URL:
    its Connection reads the options through ConfigOptsProxy (URL query over
    the file), then _fetch_ssl_params; without connecting anywhere."""
    parsed = oslo_messaging.TransportURL.parse(conf, url)
    rabbit = om_common.ConfigOptsProxy(conf, parsed, "oslo_messaging_rabbit")[
        "oslo_messaging_rabbit"]
    connection = types.SimpleNamespace(
        ssl=rabbit.ssl, ssl_version=rabbit.ssl_version, ssl_key_file=rabbit.ssl_key_file,
        ssl_cert_file=rabbit.ssl_cert_file, ssl_ca_file=rabbit.ssl_ca_file,
        ssl_server_hostname=impl_rabbit.Connection._get_ssl_server_hostname(parsed),
        validate_ssl_version=impl_rabbit.Connection.validate_ssl_version)
    return impl_rabbit.Connection._fetch_ssl_params(connection)
CA = {"ca_certs": "ca.pem", "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "mq1"}


@pytest.mark.parametrize("rabbit, url, expected", [
    # (rescue-flow.conf [oslo_messaging_rabbit], transport URL, kombu's ssl):
    # oslo.messaging's _fetch_ssl_params (the worker's 18.x: with a CA file,
    # the broker's name is checked when the URL names one host).
    ({}, URL, False),
    ({"ssl_ca_file": "ca.pem", "ssl_version": "nonsense"}, URL, False),
    ({"ssl": True}, URL, True),
    ({"ssl": True, "ssl_ca_file": "ca.pem"}, URL, CA),
    ({"ssl": True, "ssl_cert_file": "c.pem", "ssl_key_file": "k.pem"}, URL,
     {"certfile": "c.pem", "keyfile": "k.pem"}),
    ({"ssl": True, "ssl_version": "TLSv1_2", "ssl_ca_file": "ca.pem"}, URL,
     {"ssl_version": ssl.PROTOCOL_TLSv1_2, **CA}),
    ({"ssl": True, "ssl_version": "sslv23"}, URL, {"ssl_version": ssl.PROTOCOL_SSLv23}),
    # The URL's query overrides the file, as oslo.messaging's ConfigOptsProxy does.
    ({}, URL + "?ssl=1", True),
    ({"ssl": True}, URL + "?ssl=false", False),
    ({"ssl_ca_file": "ca.pem"}, URL + "?ssl=true", CA),
    ({"ssl": True}, URL + "?ssl_ca_file=ca.pem", CA),
    ({"ssl": True, "ssl_ca_file": "ca.pem"}, "rabbit://rf:secret@mq1:5672,mq2:5672/",
     {**CA, "server_hostname": None}),
])
def test_kombu_tls_follows_oslo_messagings_rules(
        rabbit: dict[str, Any], url: str, expected: Any) -> None:
    conf = _conf()
    for name, value in rabbit.items():
        conf.set_override(name, value, group="oslo_messaging_rabbit")
    conf.set_override("transport_url", url)
    got = bus.kombu_ssl(conf)
    assert got == expected and type(got) is type(expected)
    assert got == _oslo_messagings_params(conf, url)
    conf.set_override("transport_url", "rabbit://other:5672/?ssl=0")
    assert bus.kombu_ssl(conf, url) == expected  # the URL given, not the worker's own


def test_an_unknown_ssl_version_is_a_config_problem() -> None:
    conf = _conf()
    conf.set_override("ssl", True, group="oslo_messaging_rabbit")
    conf.set_override("ssl_version", "TLSv9", group="oslo_messaging_rabbit")
    conf.set_override("transport_url", URL)
    with pytest.raises(ValueError, match=r"^invalid \[oslo_messaging_rabbit\] ssl_version "
                       r"'TLSv9': this Python offers .*tlsv1_2"):
        bus.kombu_ssl(conf)
    conf.set_override("transport_url", URL + "?ssl_version=tls9", group="nova")
    assert [problem for problem in health.config_problems(conf) if "ssl_version" in problem] == [
        "[DEFAULT] transport_url: invalid [oslo_messaging_rabbit] ssl_version 'TLSv9': "
        "this Python offers " + ", ".join(sorted(bus._SSL_VERSIONS)) +
        " (oslo.messaging's names; unset: the newest TLS both sides speak)",
        "[nova] transport_url: invalid the transport URL's ssl_version 'tls9': "
        "this Python offers " + ", ".join(sorted(bus._SSL_VERSIONS)) +
        " (oslo.messaging's names; unset: the newest TLS both sides speak)"]


def test_the_publisher_raises_when_the_broker_refuses_unlike_a_notifier() -> None:
    transport = mock.Mock()
    transport._send_notification.side_effect = oslo_messaging.MessageDeliveryFailure("down")
    publisher = bus.Publisher(transport, "rescue_flow", "rescue-flow:hv-1")
    with pytest.raises(oslo_messaging.MessageDeliveryFailure):
        publisher.send("rf-requests.hv-1", bus.REQUEST_EVENT, {"a": 1})
    target = transport._send_notification.call_args.args[0]
    assert (target.exchange, target.topic) == ("rescue_flow", "rf-requests.hv-1.info")
    assert transport._send_notification.call_args.kwargs["version"] == 2.0


@pytest.mark.parametrize("path", ["missing-ca.pem", "."])  # not there; a folder
def test_a_tls_file_that_cannot_be_read_is_one_line_naming_its_option(
        tls_files: Any, path: str) -> None:
    conf = _conf()
    conf.set_override("ssl", True, group="oslo_messaging_rabbit")
    conf.set_override("ssl_ca_file", path, group="oslo_messaging_rabbit")
    conf.set_override("transport_url", URL)

    problems = [p for p in health.config_problems(conf, broker=True) if "ssl" in p]

    assert problems == ["[DEFAULT] transport_url: [oslo_messaging_rabbit] ssl_ca_file: "
                        "no file this process can read at "
                        f"{str(tls_files / path).rstrip('/.')!r}"]
    # A command that never reaches the broker (history, status, sim) is not
    # stopped by a key only the worker's service account can read.
    assert [p for p in health.config_problems(conf) if "ssl" in p] == []
