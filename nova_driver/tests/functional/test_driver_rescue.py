"""Nova's rescue and unrescue through the rescue-flow driver (issue 13).

Each test checks both sides: Nova's view (vm_state, task_state,
power_state, the instance fault) through its API, and the host's (the
simulated Hyper-V host's canonical view) before and after.
"""

from __future__ import annotations

import os
import time
from typing import Any

import simhost_inproc
from driver_harness import RescueFlowDriverTestCase
from nova.compute import power_state

RUNNING = power_state.RUNNING


class RescueAndUnrescueTest(RescueFlowDriverTestCase):

    def test_rescue_then_unrescue_nova_and_the_host_agree_each_time(self) -> None:
        server = self.boot_server()
        before = self.sim.view()

        answer = self.rescue(server)

        assert answer.get("adminPass"), answer  # Nova made a rescue password
        nova = self.wait_for_nova(server, "RESCUE")
        assert nova["vm_state"] == "rescued" and nova["fault"] is None, nova
        host = self.sim.view()
        rescue_vm = self.host_vm(server, host, rescue=True)
        assert rescue_vm is not None and rescue_vm["power_state"] == "running", host
        assert self.host_vm(server, host)["power_state"] == "off"
        # get_info follows the rescue VM: Nova's power state is the rescue VM's.
        assert nova["power_state"] == RUNNING, nova

        self.unrescue(server)

        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["vm_state"] == "active" and nova["power_state"] == RUNNING, nova
        assert self.sim.view() == before
        # One flow per Nova action, carrying Nova's request id, although Nova
        # also sent its notifications (format "both": two per action).
        requests = self.requests_for(server)
        assert sorted(r["action"] for r in requests) == ["rescue", "unrescue"], requests
        assert all(r["nova_request_id"] and r["outcome"] == "success" for r in requests), \
            requests
        assert len(self.nova_notifications.sent("instance.rescue.start")) == 1
        assert len(self.nova_notifications.sent("compute.instance.rescue.start")) == 1

    def test_delete_while_rescued_leaves_no_rescue_vm(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")
        assert self.host_vm(server, rescue=True) is not None

        self._delete_server(server)

        host = self.sim.view()
        assert self.host_vm(server, host, rescue=True) is None, host
        # The fake driver does not delete Hyper-V VMs itself: what is left is
        # the instance exactly as before its rescue, nothing the rescue made.
        assert host == before

    def test_nova_rescue_timeout_unrescues_through_the_worker(self) -> None:
        self.flags(rescue_timeout=1)
        server = self.boot_server()
        before = self.sim.view()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")
        time.sleep(1.2)

        # The periodic task, called as nova-compute's timer would.
        self.compute.manager._poll_rescued_instances(self.admin_context())

        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["power_state"] == RUNNING, nova
        assert self.sim.view() == before
        assert [r["outcome"] for r in self.requests_for(server, "unrescue")] == ["success"]


class DuplicatesTest(RescueFlowDriverTestCase):

    def test_a_duplicate_notification_and_a_redelivered_request_change_nothing(self) -> None:
        server = self.boot_server()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")
        rescued = self.sim.view()
        [request] = self.requests_for(server, "rescue")

        # Nova's notifications again, both formats, unchanged...
        for event in ("instance.rescue.start", "compute.instance.rescue.start"):
            for entry in self.nova_notifications.sent(event):
                self.nova_notifications.replay(entry)
        # ...and the driver's request again, under the same Nova request id.
        instance = self._instance(server)
        context = self.admin_context()
        context.request_id = request["nova_request_id"]
        self.driver._rescue_flow_call(context, instance, "rescue")  # returns: ok
        time.sleep(1.0)  # what the replayed notifications would do, done by now

        assert self.sim.view() == rescued
        assert self.requests_for(server, "rescue") == [request]
        assert self.nova_view(server)["status"] == "RESCUE"

    def _instance(self, server: dict[str, Any]) -> Any:
        from nova import objects

        return objects.Instance.get_by_uuid(self.admin_context(), server["id"])


class VersionedOnlyTest(RescueFlowDriverTestCase):
    """With the driver, Nova's notification format changes nothing: the
    driver's request and the notification meet in one flow."""

    notification_format = "versioned"

    def test_rescue_and_unrescue_run_one_flow_each(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        self.rescue(server)
        assert self.wait_for_nova(server, "RESCUE")["power_state"] == RUNNING
        assert self.host_vm(server, rescue=True)["power_state"] == "running"
        self.unrescue(server)
        self.wait_for_nova(server, "ACTIVE")
        assert self.sim.view() == before
        requests = self.requests_for(server)
        assert sorted(r["action"] for r in requests) == ["rescue", "unrescue"], requests
        sent = [entry[3] for tee in (self.nova_notifications.legacy,
                                     self.nova_notifications.versioned) for entry in tee.sent]
        self.check_formats(sent)

    def check_formats(self, sent: list[str]) -> None:
        assert "instance.rescue.start" in sent and "compute.instance.rescue.start" not in sent


class UnversionedOnlyTest(VersionedOnlyTest):

    notification_format = "unversioned"

    def check_formats(self, sent: list[str]) -> None:
        assert "compute.instance.rescue.start" in sent and "instance.rescue.start" not in sent


class ComputeRestartTest(RescueFlowDriverTestCase):
    """A nova-compute restarted while an instance is rescuing or unrescuing
    (Nova itself leaves it so forever) ends with Nova and the host agreeing."""

    def _interrupted(self, server: dict[str, Any], task_state: str) -> None:
        """As if nova-compute died in the middle of the action: Nova's record
        says ``task_state``; then nova-compute starts again."""
        from nova import objects

        instance = objects.Instance.get_by_uuid(self.admin_context(), server["id"])
        instance.task_state = task_state
        instance.save()
        self.compute = self.restart_compute_service(self.compute)

    def test_restarted_during_a_rescue_the_rescue_is_finished(self) -> None:
        server = self.boot_server()

        self._interrupted(server, "rescuing")

        nova = self.wait_for_nova(server, "RESCUE")
        assert nova["power_state"] == RUNNING, nova
        assert self.host_vm(server, rescue=True)["power_state"] == "running"

    def test_restarted_before_a_rescue_ran_no_password_drive_is_left(self) -> None:
        # The process that died had written the rescue config drive (with
        # the password); its request never ran. The rescue asked again has
        # no drive, so the driver removes the old one once it is settled.
        server = self.boot_server()
        stray = os.path.join(str(self.sim.instances_path), self.instance_name(server),
                             "configdrive-rescue.iso")
        simhost_inproc.open_host(self.sim.state_file).put_file(stray, b"admin_pass: old")

        self._interrupted(server, "rescuing")

        self.wait_for_nova(server, "RESCUE")
        assert self.host_vm(server, rescue=True)["power_state"] == "running"
        deadline = time.monotonic() + 30  # removed right after Nova's state is saved
        while simhost_inproc.open_host(self.sim.state_file).read_file(stray) is not None:
            assert time.monotonic() < deadline, f"{stray} is still on the host"
            time.sleep(0.2)

    def test_restarted_after_the_host_was_rescued_nova_catches_up(self) -> None:
        server = self.boot_server()
        done = self.worker.cli("run", "rescue", server["id"])
        assert done.returncode == 0, done.stdout + done.stderr
        rescued = self.sim.view()

        self._interrupted(server, "rescuing")

        self.wait_for_nova(server, "RESCUE")
        assert self.sim.view() == rescued
        outcomes = sorted(r["outcome"] for r in self.requests_for(server, "rescue"))
        assert outcomes == ["nothing_to_do", "success"], outcomes

    def test_restarted_during_an_unrescue_the_unrescue_is_finished(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")

        self._interrupted(server, "unrescuing")

        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["power_state"] == RUNNING, nova
        assert self.sim.view() == before


class WhatOnlyTheDriverKnowsTest(RescueFlowDriverTestCase):
    """The flow uses what Nova gives the driver: the rescue image Nova
    chose and Nova's clean-shutdown timeout."""

    rescue_image = "a2459075-d96c-40d5-893e-577ff92e721c"  # another GlanceFixture image

    def test_the_flow_boots_novas_rescue_image_and_waits_novas_shutdown_timeout(
            self) -> None:
        self.flags(shutdown_timeout=4)  # the worker's own default here: 2 s
        server = self.boot_server(soft_shutdown="hang")  # the guest ignores shutdown
        self.sim.run(("add_image", {"image_id": self.rescue_image, "generation": 2,
                                    "fmt": "vhdx"}))

        self.api.post_server_action(
            server["id"], {"rescue": {"rescue_image_ref": self.rescue_image}})

        self.wait_for_nova(server, "RESCUE")
        host = self.sim.view()
        parents = {path: record["parent"] for path, record in host["files"].items()}
        rescue_disks = [path for path in parents if "root-rescue" in path]
        assert len(rescue_disks) == 1, parents
        assert parents[rescue_disks[0]].endswith(f"{self.rescue_image}.vhdx"), parents
        [request] = self.requests_for(server, "rescue")
        stop = next(s for s in request["steps"] if s["step"] == "StopInstance")
        assert 3.5 <= stop["seconds"] < 15, stop  # Nova's 4 s, then a hard power-off
