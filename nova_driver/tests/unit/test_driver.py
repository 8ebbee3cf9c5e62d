"""RescueFlowMixin against a recording base driver and a fake line to the worker.

The real Nova, broker and worker are in tests/functional; here each of the
mixin's decisions is pinned: what it sends, what it raises, what it leaves
to its base driver. os-win's VMUtils is autospecced from the real class.
"""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import pytest
from nova import context as nova_context
from nova import objects
from nova.compute import power_state, task_states, vm_states
from nova.conf import CONF
from nova.tests.unit import fake_instance
from nova.virt import hardware
from os_win.utils.compute import vmutils

from rescue_flow_nova import driver, link, protocol

objects.register_all()
UUID = "9c2a6e3e-52a8-4c63-8d4b-0f6c3e1d2a77"


class RecordingDriver:
    """What a Hyper-V driver would do, reduced to a log of calls."""

    def __init__(self, virtapi: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def init_host(self, host: str) -> None:
        self.calls.append(("init_host", host))

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        return {"node": nodename}

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        self.calls.append(("power_off", instance.uuid, timeout))

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        return hardware.InstanceInfo(state=power_state.SHUTDOWN)

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        self.calls.append(("destroy", instance.uuid))

    def get_console_output(self, context: Any, instance: Any) -> str:
        return f"console of {instance.name}"

    def list_instances(self) -> list[str]:
        return ["instance-00000001", "instance-00000001-rescue", "other-rescue"]

    def list_instance_uuids(self) -> list[str]:
        return [UUID, UUID]


class FakeLink:
    def __init__(self, outcome: str = "success", reason: str | None = None,
                 error: Exception | None = None) -> None:
        self.outcome, self.reason, self.error = outcome, reason, error
        self.sent: list[dict[str, Any]] = []
        self.announced: list[tuple[str, int]] = []

    def call(self, payload: dict[str, Any], timeout: float, context: Any,
             on_step: Any) -> protocol.WorkerResult:
        self.sent.append(dict(payload))
        if self.error is not None:
            raise self.error
        on_step("StopInstance", "SUCCESS")
        return protocol.WorkerResult(payload["request_id"], payload["action"],
                                     payload["instance_uuid"], self.outcome, self.reason,
                                     "StopInstance" if self.reason else None)

    def announce(self, name: str, valid_for: int) -> bool:
        self.announced.append((name, valid_for))
        return True


class Driver(driver.RescueFlowMixin, RecordingDriver):
    pass


@pytest.fixture
def vm_utils() -> Any:
    utils = mock.create_autospec(vmutils.VMUtils, instance=True)
    utils.vm_exists.return_value = False
    return utils


@pytest.fixture
def fake_link() -> FakeLink:
    return FakeLink()


@pytest.fixture
def drv(vm_utils: Any, fake_link: FakeLink) -> Driver:
    d = Driver(mock.sentinel.virtapi)
    d._rescue_flow_link = lambda host=None: fake_link  # type: ignore[method-assign]
    d._rescue_flow_vmutils = lambda: vm_utils  # type: ignore[method-assign]
    return d


def instance(**updates: Any) -> Any:
    ctxt = nova_context.get_admin_context()
    values = {"uuid": UUID, "id": 1, "host": "hv-01", "vm_state": vm_states.ACTIVE,
              "task_state": None}
    values.update(updates)
    return fake_instance.fake_instance_obj(ctxt, **values)


def context(request_id: str = "req-11111111-2222-3333-4444-555555555555") -> Any:
    ctxt = nova_context.get_admin_context()
    ctxt.request_id = request_id
    return ctxt


def image_meta(**props: Any) -> Any:
    return objects.ImageMeta.from_dict({
        "id": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "properties": props})


def test_power_off_during_a_rescue_is_left_to_the_flow_with_novas_timeout(
        drv: Driver, fake_link: FakeLink) -> None:
    rescuing = instance(task_state=task_states.RESCUING)
    drv.power_off(rescuing, timeout=45, retry_interval=5)
    assert drv.calls == []  # the VM was not touched
    drv.rescue(context(), rescuing, [], image_meta(hw_machine_type="hyperv-gen2",
                                                   os_secure_boot="required",
                                                   os_type="linux"), "secret", {})
    (sent,) = fake_link.sent
    assert (sent["action"], sent["shutdown_timeout"], sent["image_generation"],
            sent["image_os_secure_boot"], sent["image_os_type"], sent["image_id"]) == (
        "rescue", 45, 2, "required", "linux", "155d900f-4e14-4e4c-a73d-069cbf4541e6")
    assert "secret" not in repr(sent)  # the password never travels


def test_power_off_outside_a_rescue_is_the_base_drivers(drv: Driver) -> None:
    drv.power_off(instance(task_state=task_states.POWERING_OFF), timeout=30)
    assert drv.calls == [("power_off", UUID, 30)]


def test_the_request_id_is_novas_action_and_the_deadlines_follow_the_options(
        drv: Driver, fake_link: FakeLink) -> None:
    before = datetime.datetime.now(datetime.timezone.utc)
    drv.unrescue(context("req-abc"), instance(vm_state=vm_states.RESCUED))
    (sent,) = fake_link.sent
    assert sent["request_id"] == f"nova:req-abc:unrescue:{UUID}"
    assert sent["nova_request_id"] == "req-abc" and sent["host"] == "hv-01"
    group = CONF.rescue_flow
    deadline = datetime.datetime.fromisoformat(sent["deadline"])
    start_by = datetime.datetime.fromisoformat(sent["start_by"])
    assert 0 <= (deadline - before).total_seconds() - (
        group.timeout - group.revert_allowance) < 5
    assert 0 <= (start_by - before).total_seconds() - group.start_timeout < 5


def test_a_failed_flow_raises_with_the_step_the_cause_and_the_hosts_state(
        drv: Driver, fake_link: FakeLink) -> None:
    fake_link.outcome, fake_link.reason = "failed", "StopInstance failed: WMI job failed"
    with pytest.raises(driver.RescueFlowFailed) as caught:
        drv.rescue(context(), instance(task_state=task_states.RESCUING), [], image_meta(),
                   "pw", {})
    assert str(caught.value) == "StopInstance failed: WMI job failed; host restored"


@pytest.mark.parametrize("error, says", [
    (link.WorkerUnavailable("no rescue-flow worker is running for host hv-01"),
     "no rescue-flow worker is running for host hv-01; host unchanged"),
    (link.WorkerTimedOut("no result from the rescue-flow worker within 900s"),
     f"no result from the rescue-flow worker within 900s; the worker reverts at its "
     f"deadline: see rescue-flow status {UUID}")])
def test_an_unreachable_or_silent_worker_is_a_clear_fault(
        drv: Driver, fake_link: FakeLink, error: Exception, says: str) -> None:
    fake_link.error = error
    with pytest.raises(driver.RescueFlowFailed) as caught:
        drv.unrescue(context(), instance(vm_state=vm_states.RESCUED))
    assert str(caught.value) == says


def test_nothing_to_do_is_success(drv: Driver, fake_link: FakeLink) -> None:
    fake_link.outcome = "nothing_to_do"
    drv.unrescue(context(), instance())


def test_get_info_follows_the_rescue_vm_while_rescued(drv: Driver, vm_utils: Any) -> None:
    vm_utils.vm_exists.side_effect = lambda name: name == "instance-00000001-rescue"
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    rescued = instance(vm_state=vm_states.RESCUED)
    assert drv.get_info(rescued).state == power_state.RUNNING
    vm_utils.get_vm_summary_info.assert_called_once_with("instance-00000001-rescue")
    # Not rescued: the base driver answers, and Hyper-V is not asked twice.
    vm_utils.reset_mock()
    assert drv.get_info(instance()).state == power_state.SHUTDOWN
    vm_utils.vm_exists.assert_not_called()


def test_the_rescue_vm_power_states_read_as_compute_hyperv_reads_the_instances(
        drv: Driver, vm_utils: Any) -> None:
    from compute_hyperv.nova import constants as chv_constants

    vm_utils.vm_exists.return_value = True
    rescued = instance(vm_state=vm_states.RESCUED)
    for enabled_state, nova_state in chv_constants.HYPERV_POWER_STATE.items():
        vm_utils.get_vm_summary_info.return_value = {"EnabledState": enabled_state}
        assert drv.get_info(rescued).state == nova_state, enabled_state


def test_the_console_follows_the_rescue_vm_while_rescued(drv: Driver, vm_utils: Any) -> None:
    vm_utils.vm_exists.return_value = True
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    assert drv.get_console_output(None, instance(vm_state=vm_states.RESCUED)) == \
        "console of instance-00000001-rescue"
    assert drv.get_console_output(None, instance()) == "console of instance-00000001"


def test_the_rescue_vm_is_never_listed_as_an_instance(drv: Driver) -> None:
    assert drv.list_instances() == ["instance-00000001", "other-rescue"]
    assert drv.list_instance_uuids() == [UUID]


def test_destroy_of_a_rescued_instance_unrescues_it_first(
        drv: Driver, fake_link: FakeLink, vm_utils: Any) -> None:
    vm_utils.vm_exists.return_value = True
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    drv.destroy(context("req-del"), instance(vm_state=vm_states.RESCUED), [])
    assert [sent["request_id"] for sent in fake_link.sent] == [
        f"nova:req-del:unrescue:{UUID}"]
    assert drv.calls == [("destroy", UUID)]


def test_destroy_stops_when_the_rescue_cannot_be_undone(
        drv: Driver, fake_link: FakeLink, vm_utils: Any) -> None:
    vm_utils.vm_exists.return_value = True
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    fake_link.outcome, fake_link.reason = "failed", "StopRescueVM failed: boom"
    with pytest.raises(driver.RescueFlowFailed):
        drv.destroy(context(), instance(vm_state=vm_states.RESCUED), [])
    assert drv.calls == []  # the instance's disk is not deleted under the rescue VM


@pytest.fixture(autouse=True)
def no_background_threads() -> Any:
    with mock.patch("nova.utils.spawn_n") as spawn_n:
        yield spawn_n


def test_the_driver_announces_itself_at_start_and_then_only_when_due(
        drv: Driver, fake_link: FakeLink, no_background_threads: Any) -> None:
    drv.init_host("hv-01")
    no_background_threads.assert_called_once_with(drv._rescue_flow_settle_interrupted,
                                                   "hv-01")
    drv.get_available_resource("hv-01")
    assert drv.calls == [("init_host", "hv-01")]
    assert fake_link.announced == [
        (f"{__name__}.Driver", CONF.rescue_flow.announce_valid_for)]
    assert drv._rescue_flow_host == "hv-01"


def test_an_announcement_that_fails_is_tried_again_at_the_next_resource_update(
        drv: Driver, fake_link: FakeLink) -> None:
    calls = []

    def announce(name: str, valid_for: int) -> bool:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionRefusedError("broker down")
        return True

    fake_link.announce = announce  # type: ignore[method-assign]
    drv.init_host("hv-01")  # logs a warning, nova-compute starts anyway
    drv.get_available_resource("hv-01")
    drv.get_available_resource("hv-01")
    assert len(calls) == 2


@pytest.mark.parametrize("interrupted, action, settled", [
    (task_states.RESCUING, "rescue", vm_states.RESCUED),
    (task_states.UNRESCUING, "unrescue", vm_states.ACTIVE)])
def test_an_action_a_restart_cut_short_is_asked_again_and_novas_state_set_from_it(
        drv: Driver, fake_link: FakeLink, vm_utils: Any, interrupted: str, action: str,
        settled: str) -> None:
    stuck = instance(task_state=interrupted, vm_state=vm_states.ACTIVE)
    stuck.save = mock.Mock()
    vm_utils.vm_exists.return_value = action == "rescue"
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    with mock.patch.object(objects.InstanceList, "get_by_filters",
                           return_value=[stuck]) as listed:
        drv._rescue_flow_settle_interrupted("hv-01")
    assert listed.call_args[0][1] == {
        "host": "hv-01", "deleted": False,
        "task_state": [task_states.RESCUING, task_states.UNRESCUING]}
    (sent,) = fake_link.sent
    assert sent["action"] == action
    assert sent["request_id"].startswith("nova:req-") and sent["source"] == "nova-driver"
    if action == "rescue":
        assert sent["shutdown_timeout"] == CONF.shutdown_timeout
    assert (stuck.vm_state, stuck.task_state) == (settled, None)
    stuck.save.assert_called_once_with(expected_task_state=[interrupted])


def test_an_interrupted_action_that_fails_again_leaves_nova_in_error_with_the_fault(
        drv: Driver, fake_link: FakeLink) -> None:
    fake_link.outcome, fake_link.reason = "failed", "StopInstance failed: boom"
    stuck = instance(task_state=task_states.RESCUING)
    stuck.save = mock.Mock()
    with mock.patch.object(objects.InstanceList, "get_by_filters", return_value=[stuck]), \
            mock.patch("nova.compute.utils.add_instance_fault_from_exc") as fault:
        drv._rescue_flow_settle_interrupted("hv-01")
    assert (stuck.vm_state, stuck.task_state) == (vm_states.ERROR, None)
    assert str(fault.call_args[0][2]) == "StopInstance failed: boom; host restored"


@pytest.fixture
def rescue_flow_times() -> Any:
    """Set [rescue_flow] options for one test; cleared after it."""
    set_names: list[str] = []

    def set_times(**values: int) -> None:
        for name, value in values.items():
            CONF.set_override(name, value, group="rescue_flow")
            set_names.append(name)

    yield set_times
    for name in set_names:
        CONF.clear_override(name, group="rescue_flow")


@pytest.mark.parametrize("times, says", [
    ({"timeout": 300, "revert_allowance": 300},
     "[rescue_flow] revert_allowance (300s) must be less than [rescue_flow] timeout "
     "(300s): the worker would have no time to run a step; host unchanged"),
    ({"timeout": 300, "revert_allowance": 200, "start_timeout": 100},
     "[rescue_flow] start_timeout (100s) must be less than timeout - revert_allowance "
     "(100s): a request started that late would be past its deadline at once; "
     "host unchanged"),
])
def test_times_that_leave_the_worker_no_time_fail_each_call_naming_the_options(
        drv: Driver, fake_link: FakeLink, rescue_flow_times: Any, host_folders: Any,
        times: dict[str, int], says: str) -> None:
    rescue_flow_times(**times)

    with pytest.raises(driver.RescueFlowFailed) as unrescue_failed:
        drv.unrescue(context(), instance(vm_state=vm_states.RESCUED))
    with pytest.raises(driver.RescueFlowFailed) as rescue_failed:
        drv.rescue(context(), instance(task_state=task_states.RESCUING), [], image_meta(),
                   "pw", {})

    assert str(unrescue_failed.value) == str(rescue_failed.value) == says
    assert fake_link.sent == []
    # Nothing was sent: the rescue config drive built for it is gone too.
    assert list((host_folders / "instance-00000001").iterdir()) == []


def test_start_names_times_that_cannot_work_without_stopping_nova_compute(
        drv: Driver, rescue_flow_times: Any, no_background_threads: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    rescue_flow_times(timeout=120, revert_allowance=120)
    drv.init_host("hv-01")
    rescue_flow_times(revert_allowance=70, start_timeout=10)  # 50s of work, 60s shutdown
    drv.init_host("hv-01")

    assert drv.calls == [("init_host", "hv-01")] * 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert errors == ["rescue and unrescue will fail: [rescue_flow] revert_allowance "
                      "(120s) must be less than [rescue_flow] timeout (120s): the worker "
                      "would have no time to run a step"]
    assert any("timeout - revert_allowance (50s) is not more than [DEFAULT] "
               "shutdown_timeout (60s)" in w for w in warnings), warnings


@pytest.mark.parametrize("outcome, error, held, left", [
    # The interrupted rescue is done: the rescue VM holds its drive, keep it.
    ("success", None, True, True),
    # Done anew without a drive (the old request was refused): a stray.
    ("success", None, False, False),
    # Refused or undone again: nothing holds the old drive.
    ("refused", None, False, False),
    ("failed", None, False, False),
    # Quarantined (an operator's), no answer (the worker may still use it),
    # or not sent (the worker not started yet: the old request still queued).
    ("quarantined", None, False, True),
    ("success", link.WorkerTimedOut("no result within 900s"), False, True),
    ("success", link.WorkerUnavailable("no rescue-flow worker is running"), False, True),
])
def test_settling_an_interrupted_rescue_leaves_no_stray_password_drive(
        drv: Driver, fake_link: FakeLink, vm_utils: Any, host_folders: Any,
        outcome: str, error: Exception | None, held: bool, left: bool) -> None:
    drive = host_folders / "instance-00000001" / "configdrive-rescue.iso"
    drive.write_bytes(b"admin_pass")  # written by the process that restarted
    fake_link.outcome, fake_link.error = outcome, error
    fake_link.reason = None if outcome == "success" else "it ended so"
    vm_utils.vm_exists.return_value = held
    # Hyper-V spells the path its own way: another case, backslashes.
    vm_utils.get_vm_storage_paths.return_value = (
        [str(drive).upper().replace("/", "\\")] if held else [], [])
    vm_utils.get_vm_summary_info.return_value = {"EnabledState": 2}
    stuck = instance(task_state=task_states.RESCUING)
    stuck.save = mock.Mock()

    with mock.patch.object(objects.InstanceList, "get_by_filters", return_value=[stuck]), \
            mock.patch("nova.compute.utils.add_instance_fault_from_exc"):
        drv._rescue_flow_settle_interrupted("hv-01")

    assert drive.exists() is left
    assert fake_link.sent[0]["config_drive"] is None  # the password died with it
    stuck.save.assert_called_once()
