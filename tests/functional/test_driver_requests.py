"""Requests from rescue-flow's Nova driver, on real TaskFlow and a simulated host:
its deadlines, its shutdown timeout, and its announcement that makes the
worker leave Nova's notifications to it (docs/protocol.md)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from msgkit import (
    GEN1_IMAGE,
    ResultLog,
    make_conf,
    nova_context,
    publishing_as_nova,
    seed_host,
    versioned_event,
)
from simsite import GEN2_IMAGE, GEN2_UUID, new_request_id

from rescue_flow import requests
from rescue_flow.messaging.client import Client
from rescue_flow.outcome import Outcome
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.service.driver_presence import DriverHello, DriverPresence
from rescue_flow.service.worker import Worker

MEMORY = "kombu+memory:////"
HOST = "hv-driver-1"


def at(seconds: float) -> str:
    """A protocol time ``seconds`` from now."""
    return requests.format_time(requests.utcnow() + datetime.timedelta(seconds=seconds))


def driver_request(action: str, instance_uuid: str, **fields: Any) -> Request:
    nova_request_id = f"req-{new_request_id()[4:]}"
    return Request(action, instance_uuid,
                   requests.nova_action_request_id(nova_request_id, action, instance_uuid),
                   source="nova-driver", nova_request_id=nova_request_id, **fields)


def test_a_request_not_started_by_its_start_by_is_refused_with_the_host_untouched(
        seeded) -> None:
    before = seeded.view()
    result = seeded.runner.handle(driver_request("rescue", GEN2_UUID, image_id=GEN2_IMAGE,
                                                 start_by=at(-1), deadline=at(600)))
    assert result.outcome is Outcome.REFUSED
    assert "nothing was changed" in (result.reason or "")
    assert seeded.view() == before
    assert seeded.sim.calls() == []  # not even read


def test_a_deadline_that_passes_mid_flow_reverts_to_the_exact_earlier_host(seeded) -> None:
    before = seeded.view()
    # The stop step takes 1.5 s; the deadline falls inside it, so the next
    # step does not start and everything done so far is undone.
    seeded.sim.set_latency("soft_shutdown_vm", 1.5)
    result = seeded.runner.handle(driver_request("rescue", GEN2_UUID, image_id=GEN2_IMAGE,
                                                 start_by=at(60), deadline=at(1.0)))
    assert result.outcome is Outcome.FAILED, result.reason
    assert result.failed_step == "CreateRescueDisk"
    assert "deadline" in (result.reason or "")
    assert result.reverted_steps == ["CreateRescueDisk", "StopInstance",
                                     "CheckRescueConfigDrive", "SnapshotConfig",
                                     "ValidateRescue"]
    seeded.sim.set_latency("soft_shutdown_vm", 0)
    assert seeded.view() == before


def test_unrescue_clean_up_after_the_point_of_no_return_ignores_the_deadline(seeded) -> None:
    assert seeded.rescue(GEN2_UUID, GEN2_IMAGE).outcome is Outcome.SUCCESS
    # Starting the instance takes longer than the deadline: the instance is
    # back, so the clean-up still runs and the unrescue succeeds.
    seeded.sim.set_latency("set_vm_state", 0.6)
    result = seeded.runner.handle(driver_request("unrescue", GEN2_UUID, start_by=at(60),
                                                 deadline=at(1.5)))
    assert result.outcome is Outcome.SUCCESS, result.reason
    assert not result.leftovers
    assert "instance-00000002-rescue" not in seeded.view()


@pytest.mark.parametrize("shutdown_timeout, soft_calls", [(0, 0), (30, 1)])
def test_the_stop_step_uses_novas_shutdown_timeout(seeded, shutdown_timeout: int,
                                                   soft_calls: int) -> None:
    result = seeded.runner.handle(driver_request(
        "rescue", GEN2_UUID, image_id=GEN2_IMAGE, shutdown_timeout=shutdown_timeout))
    assert result.outcome is Outcome.SUCCESS, result.reason
    methods = [call["method"] for call in seeded.sim.calls()]
    assert methods.count("soft_shutdown_vm") == soft_calls


def test_an_announcement_is_kept_in_the_history_and_expires(tmp_path) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, "presence")
    history = History.from_conf(conf)
    now = [datetime.datetime(2026, 12, 6, 12, 0)]
    presence = DriverPresence(history.engine, HOST, clock=lambda: now[0])
    assert presence.driver() is None
    presence.announce(DriverHello(HOST, "rescue_flow_nova.compute_hyperv.HyperVDriver", 1,
                                  600))
    # A worker started later reads it back.
    restarted = DriverPresence(history.engine, HOST, clock=lambda: now[0])
    assert restarted.driver() == "rescue_flow_nova.compute_hyperv.HyperVDriver"
    now[0] += datetime.timedelta(seconds=601)
    assert restarted.driver() is None
    history.close()


def _publish_hello(conf: Any, valid_for: int = 3600) -> None:
    client = Client(conf)
    try:
        client.router.publisher.send(
            f"{conf.worker.requests_topic}.{HOST}", "rescue_flow.driver.hello",
            {"host": HOST, "driver": "tests.Driver", "protocol": 1,
             "valid_for": valid_for})
    finally:
        client.close()


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_once_the_driver_announced_itself_nova_events_are_left_to_it_and_its_request_runs(
        tmp_path, unique_name) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name)
    sim, (gen1, _gen2) = seed_host(conf)
    before = sim.view_json()
    worker = Worker(conf)
    worker.start()
    try:
        _publish_hello(conf)
        _wait_for(lambda: worker.presence.driver() == "tests.Driver")
        with ResultLog(conf) as results, publishing_as_nova(conf, HOST) as nova:
            event_type, payload, nova_request_id = versioned_event(
                "instance-rescue-start.json", gen1, HOST, GEN1_IMAGE)
            nova.info(nova_context(nova_request_id), event_type, payload)
            _wait_for(lambda: worker.handler.stats["left_to_driver"] == 1)
            assert worker.history.recent(gen1) == []
            assert sim.view_json() == before
            # The driver's request for the same Nova action runs, once.
            request = Request("rescue", gen1, requests.nova_action_request_id(
                nova_request_id, "rescue", gen1), host=HOST, source="nova-driver",
                nova_request_id=nova_request_id, start_by=at(60), deadline=at(600))
            client = Client(conf)
            try:
                client.send(request)
            finally:
                client.close()
            result = results.result_for(request.request_id)
        assert result["payload"]["outcome"] == "success"
        (record,) = worker.history.recent(gen1)
        assert (record.request.source, record.request.nova_request_id) == (
            "nova-driver", nova_request_id)
    finally:
        worker.stop()
        worker.wait()
