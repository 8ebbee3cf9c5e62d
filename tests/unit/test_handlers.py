"""The two message handlers, called directly: the worker's RequestIntake (with
its FlowQueue) and the NovaIntake. What each acks, requeues, runs and notifies."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from msgkit import SAMPLES, load_sample

from rescue_flow import exceptions
from rescue_flow.engine.progress import StepEvent
from rescue_flow.messaging import bus, nova, protocol
from rescue_flow.messaging.nova_intake import NovaIntake
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence.backend import create_engine
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.service.flow_queue import FlowQueue
from rescue_flow.service.request_intake import RequestIntake

HOST = "hv-1"
UUID = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01"


class Outbox:
    """A Publisher that records, and fails the next ``fail`` sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = 0

    def send(self, topic, event_type, payload, priority="info", retry=None, context=None):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker away")
        self.sent.append({"topic": topic, "event_type": event_type, "payload": payload,
                          "priority": priority})
        return "id"

    def events(self) -> list[str]:
        return [m["event_type"] for m in self.sent]


class Runner:
    """Stands in for FlowRunner: records what it ran and finishes it in the history."""

    def __init__(self, history: History, error: Exception | None = None,
                 steps: int = 0) -> None:
        self.history = history
        self.executed: list[Request] = []
        self.error = error
        self.steps = steps

    def execute(self, request: Request, on_step=None) -> Result:
        self.executed.append(request)
        if self.error is not None:
            raise self.error
        for index in range(self.steps):
            if on_step is not None:
                on_step(StepEvent("rescue-instance", f"Step{index}", "SUCCESS", 0.1))
        result = Result(request.request_id, request.action, request.instance_uuid, HOST,
                        Outcome.SUCCESS, step_durations={"Step0": 0.1})
        self.history.finish(result)
        return result


class Setup:
    """An intake and its flow queue on a real (SQLite) history."""

    def __init__(self, tmp_path, attempts: int = 3, **runner_args: Any) -> None:
        self.history = History(create_engine(f"sqlite:///{tmp_path}/history.sqlite"), HOST)
        self.history.upgrade()
        self.outbox = Outbox()
        results = protocol.Results(self.outbox, "rf-results")
        self.runner = Runner(self.history, **runner_args)
        self.flows = FlowQueue(self.runner, results, max_workers=2)
        self.intake = RequestIntake(self.history, self.flows, results, HOST, attempts)

    def deliver(self, message: dict) -> Any:
        outcome = self.intake({}, message)
        assert self.flows.scheduler.wait_idle(10)
        return outcome

    def close(self) -> None:
        self.flows.stop()
        self.flows.wait()
        self.history.close()


@pytest.fixture
def setup(tmp_path):
    made = []

    def make(**kwargs: Any) -> Setup:
        made.append(Setup(tmp_path / str(len(made)), **kwargs))
        made[-1].history.engine  # noqa: B018 - created
        return made[-1]

    yield make
    for each in made:
        each.close()


def _message(request_id: str = "client-1", progress: bool = False, **changes: Any) -> dict:
    payload = dict(Request("rescue", UUID, request_id, host=HOST).to_dict(), progress=progress)
    payload.update(changes)
    return {"message_id": f"m-{request_id}", "event_type": bus.REQUEST_EVENT,
            "payload": payload, "publisher_id": "rescue-flow-client:x", "priority": "INFO"}


def test_a_request_is_recorded_before_its_ack_then_runs_and_its_result_is_notified(setup):
    s = setup()
    assert s.intake({}, _message()) == bus.HANDLED
    assert s.history.get("client-1") is not None  # recorded when the ack is given
    assert s.flows.scheduler.wait_idle(10)
    assert [r.request_id for r in s.runner.executed] == ["client-1"]
    assert s.outbox.events() == ["rescue_flow.rescue.end"]
    assert s.outbox.sent[0]["payload"]["outcome"] == "success"


def test_a_redelivered_request_is_acked_and_its_result_sent_again_without_running(setup):
    s = setup()
    s.deliver(_message())
    assert s.deliver(_message()) == bus.HANDLED
    assert len(s.runner.executed) == 1
    assert s.outbox.events() == ["rescue_flow.rescue.end", "rescue_flow.rescue.end"]
    assert s.intake.stats["duplicates"] == 1


def test_a_result_that_could_not_be_sent_is_sent_on_redelivery_without_rerunning(setup):
    s = setup()
    s.outbox.fail = 1
    assert s.deliver(_message()) == bus.HANDLED  # recorded: the ack goes out
    assert s.outbox.events() == []
    assert s.deliver(_message()) == bus.HANDLED
    assert len(s.runner.executed) == 1
    assert s.outbox.events() == ["rescue_flow.rescue.end"]


def test_steps_are_notified_only_when_the_sender_waits(setup):
    s = setup(steps=2)
    s.deliver(_message("quiet"))
    s.deliver(_message("waiting", progress=True))
    assert s.outbox.events() == ["rescue_flow.rescue.end", "rescue_flow.step",
                                 "rescue_flow.step", "rescue_flow.rescue.end"]
    assert s.outbox.sent[1]["payload"]["request_id"] == "waiting"


def test_a_lost_step_does_not_stop_the_flow(setup):
    s = setup(steps=1)
    s.outbox.fail = 1  # the step
    assert s.deliver(_message(progress=True)) == bus.HANDLED
    assert s.outbox.events() == ["rescue_flow.rescue.end"]


@pytest.mark.parametrize("payload", ["not an object", {"action": "rescue"},
                                     {"action": "rescue", "instance_uuid": "vm-1",
                                      "request_id": "r"}])
def test_bad_input_is_acked_with_an_error_notification_and_never_run(setup, payload):
    s = setup()
    message = _message()
    message["payload"] = payload
    assert s.deliver(message) == bus.HANDLED
    assert s.runner.executed == []
    assert s.history.recent() == []
    assert s.outbox.events() == ["rescue_flow.rescue.error" if isinstance(payload, dict)
                                 else "rescue_flow.request.error"]
    assert s.outbox.sent[0]["payload"]["reason"].startswith("invalid request: ")


def test_a_request_that_cannot_be_recorded_is_retried_then_answered_and_dropped(
        setup, monkeypatch):
    s = setup()
    monkeypatch.setattr(s.history, "accept", _raise(RuntimeError("database is locked")))
    outcomes = [s.deliver(_message()) for _ in range(3)]
    assert outcomes == [bus.REQUEUE, bus.REQUEUE, bus.HANDLED]
    assert s.runner.executed == []
    assert s.outbox.events() == ["rescue_flow.rescue.error"]
    payload = s.outbox.sent[0]["payload"]
    assert (payload["outcome"], payload["request_id"]) == ("failed", "client-1")
    assert payload["reason"] == "gave up after 3 attempts: database is locked"


def test_a_flow_that_dies_leaves_its_request_recorded_for_the_next_start(setup):
    s = setup(error=RuntimeError("state folder is read-only"))
    assert s.deliver(_message()) == bus.HANDLED
    assert s.flows.stats["crashed"] == 1
    assert [r.request.request_id for r in s.history.unfinished()] == ["client-1"]
    assert s.outbox.events() == []


def _raise(error: Exception) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error
    return fail


# -- the Nova intake -----------------------------------------------------------------

def _intake(outbox: Outbox, hosts: list[str] | None = None, attempts: int = 3) -> NovaIntake:
    router = protocol.Router(outbox, "rf-requests")
    return NovaIntake(router, protocol.Results(outbox, "rf-results"), "hv-intake",
                      max_attempts=attempts, hosts=hosts)


def _nova(**data: Any) -> dict[str, Any]:
    message = copy.deepcopy(load_sample(SAMPLES / "resolved" / "instance-rescue-start.json"))
    message["payload"]["nova_object.data"].update(data)
    message["message_id"] = "nova-msg-1"
    return message


def test_a_nova_rescue_is_routed_to_its_hosts_queue() -> None:
    outbox = Outbox()
    assert _intake(outbox)({"request_id": "req-9"}, _nova(host="hv-7")) == bus.HANDLED
    [sent] = outbox.sent
    assert (sent["topic"], sent["event_type"]) == ("rf-requests.hv-7", bus.REQUEST_EVENT)
    assert sent["payload"]["request_id"].startswith("nova:req-9:rescue:")
    assert (sent["payload"]["host"], sent["payload"]["progress"]) == ("hv-7", False)


def test_other_nova_events_are_acked_silently() -> None:
    outbox = Outbox()
    message = load_sample(SAMPLES / "resolved" / "instance-rescue-end.json")
    assert _intake(outbox)({}, message) == bus.HANDLED
    assert outbox.sent == []


def test_events_for_hosts_without_a_worker_are_ignored() -> None:
    outbox = Outbox()
    assert _intake(outbox, hosts=["hv-1"])({}, _nova(host="kvm-3")) == bus.HANDLED
    assert outbox.sent == []


def test_a_malformed_nova_event_gets_an_error_naming_the_instance() -> None:
    outbox = Outbox()
    message = _nova(image_uuid="not-an-image", rescue_image_ref=None)
    assert _intake(outbox)({}, message) == bus.HANDLED
    [sent] = outbox.sent
    assert sent["event_type"] == "rescue_flow.rescue.error"
    assert sent["payload"]["instance_uuid"] == "178b0921-8f85-4257-88b6-2e743b5a975c"
    assert "image_uuid is not a UUID" in sent["payload"]["reason"]


def test_a_nova_event_is_read_once_then_routed(monkeypatch) -> None:
    outbox = Outbox()
    reads = []
    real_parse = nova.parse
    monkeypatch.setattr(nova, "parse", lambda *args: reads.append(args) or real_parse(*args))

    assert _intake(outbox)({"request_id": "req-9"}, _nova(host="hv-7")) == bus.HANDLED

    assert len(reads) == 1 and len(outbox.sent) == 1


def test_a_nova_event_that_breaks_the_parser_is_answered_at_once_not_retried(
        monkeypatch) -> None:
    # Reading depends on the message alone: a redelivery would break it again.
    outbox = Outbox()
    monkeypatch.setattr(nova, "parse", _raise(KeyError("nova_object.data")))

    assert _intake(outbox, attempts=3)({}, _nova()) == bus.HANDLED

    [sent] = outbox.sent
    assert sent["event_type"] == "rescue_flow.rescue.error"
    assert "cannot be read: KeyError" in sent["payload"]["reason"]
    assert sent["payload"]["instance_uuid"] == "178b0921-8f85-4257-88b6-2e743b5a975c"


def test_routing_that_keeps_failing_is_retried_then_answered() -> None:
    outbox = Outbox()
    intake = _intake(outbox, attempts=2)
    outbox.fail = 2
    assert intake({}, _nova()) == bus.REQUEUE
    assert intake({}, _nova()) == bus.HANDLED
    assert outbox.events() == ["rescue_flow.rescue.error"]
    assert "gave up after 2 attempts" in outbox.sent[0]["payload"]["reason"]


# History storage down -------------------------------------------------------

def _unavailable() -> exceptions.StorageUnavailable:
    return exceptions.StorageUnavailable(OSError(28, "No space left on device"))


class StorageBlipRunner(Runner):
    """Its first execute meets a history that stays down; resumes succeed."""

    def __init__(self, history: History) -> None:
        super().__init__(history)
        self.resumed: list[str] = []

    def execute(self, request: Request, on_step=None) -> Result:
        if not self.executed:
            self.executed.append(request)
            raise _unavailable()
        return super().execute(request, on_step)

    def resume(self, record, on_step=None) -> Result:
        self.resumed.append(record.request.request_id)
        result = Result(record.request.request_id, record.request.action,
                        record.request.instance_uuid, HOST, Outcome.SUCCESS)
        self.history.finish(result)
        return result


def test_a_request_left_by_a_storage_outage_resumes_once_storage_answers(setup) -> None:
    s = setup()
    s.runner = s.flows.runner = StorageBlipRunner(s.history)
    s.deliver(_message("blip-1"))
    s.deliver(_message("blip-2"))  # the same instance: it waits its turn

    assert [r.request_id for r in s.runner.executed] == ["blip-1", "blip-2"]
    assert s.runner.resumed == ["blip-1"]  # in its place, before blip-2, once
    # No error went out for the outage: the caller waits for the real end.
    assert s.outbox.events() == ["rescue_flow.rescue.end", "rescue_flow.rescue.end"]
    assert s.flows.stats["storage_unavailable"] == 1
    assert s.history.get("blip-1").outcome == "success"


def test_the_intake_holds_requests_while_storage_is_down_without_spending_attempts(
        setup, monkeypatch) -> None:
    s = setup(attempts=1)
    down = {"accepts": 2, "pings": 3}
    accept = s.history.accept

    def flaky_accept(request):
        if down["accepts"]:
            down["accepts"] -= 1
            raise _unavailable()
        return accept(request)

    def flaky_ping():
        if down["pings"]:
            down["pings"] -= 1
            raise _unavailable()

    monkeypatch.setattr(s.history, "accept", flaky_accept)
    monkeypatch.setattr(s.flows.storage, "_ping", flaky_ping)
    monkeypatch.setattr(s.flows.storage, "_first_probe", 0.01)

    assert s.deliver(_message("held-1")) == bus.HANDLED

    assert [r.request_id for r in s.runner.executed] == ["held-1"]
    assert s.intake.stats["gave_up"] == 0 and s.intake.stats["requeued"] == 0


def test_a_stop_while_storage_is_down_sends_the_request_back_to_the_broker(
        setup, monkeypatch) -> None:
    s = setup()
    monkeypatch.setattr(s.history, "accept", lambda request: (_ for _ in ()).throw(
        _unavailable()))
    monkeypatch.setattr(s.flows.storage, "_ping", lambda: (_ for _ in ()).throw(
        _unavailable()))
    threading.Timer(0.3, s.flows.stop).start()

    assert s.intake({}, _message("stopped-1")) == bus.REQUEUE
    assert s.runner.executed == []
