"""The loop without the compute driver: Nova's own notification, on the real
broker, makes the real worker rescue the VM on the (simulated) host.

Nova's compute driver here is plain ``nova.virt.fake.MediumFakeDriver``, so
Nova reports whatever the fake driver says, whatever the host does: the
defect that ``rescue_flow_nova`` (issue 13) fixes. These tests pin down that
the harness itself works: Nova's real ``instance.rescue.start`` /
``compute.instance.rescue.start`` reach a worker in another process.
"""

from __future__ import annotations

from harness import RescueFlowNovaTestCase


class NotificationLoopTest(RescueFlowNovaTestCase):
    """Nova's [notifications] notification_format = both: one flow per action
    although each action arrives twice (versioned and legacy)."""

    def test_novas_rescue_notification_makes_the_worker_rescue_the_vm(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        assert self.host_vm(server, before)["power_state"] == "running"

        self.api.post_server_action(server["id"], {"rescue": None})
        result = self.results.wait(server["id"], "rescue")

        assert result["outcome"] == "success", result
        after = self.sim.view()
        rescue_vm = self.host_vm(server, after, rescue=True)
        assert rescue_vm is not None and rescue_vm["power_state"] == "running"
        # Nova believed its fake driver, not the host.
        assert self.wait_for_nova(server, "RESCUE")["vm_state"] == "rescued"

        self.api.post_server_action(server["id"], {"unrescue": None})
        result = self.results.wait(server["id"], "unrescue")
        assert result["outcome"] == "success", result
        self.wait_for_nova(server, "ACTIVE")
        assert self.sim.view() == before

        # One flow per action, whatever reached the worker.
        requests = self.worker.status(server["id"])
        assert sorted(r["action"] for r in requests) == ["rescue", "unrescue"], requests


class VersionedNotificationLoopTest(NotificationLoopTest):
    """notification_format = versioned: instance.rescue.start alone."""

    notification_format = "versioned"


class UnversionedNotificationLoopTest(NotificationLoopTest):
    """notification_format = unversioned (Nova 2023.1's default):
    compute.instance.rescue.start alone."""

    notification_format = "unversioned"
