"""The rescue-flow driver on compute-hyperv's HyperVDriver, os-win on the
simulated host: compute-hyperv's own get_info, list_instances, consoles and
destroy run against the host the worker changes."""

from __future__ import annotations

from driver_harness import ComputeHyperVTestCase
from nova.compute import power_state


class ComputeHyperVRescueTest(ComputeHyperVTestCase):

    def test_rescue_and_unrescue_nova_sees_the_rescue_vm_while_rescued(self) -> None:
        server = self.boot_server()
        name = self.instance_name(server)
        before = self.sim.view()
        assert self.host_vm(server, before)["power_state"] == "running"  # spawned there
        assert self.nova_view(server)["power_state"] == power_state.RUNNING
        # compute-hyperv's console reader, keyed by VM name as it is.
        self.driver._serialconsoleops.get_console_output = \
            lambda vm_name: f"console of {vm_name}\n".encode()

        self.rescue(server)

        nova = self.wait_for_nova(server, "RESCUE")
        assert nova["power_state"] == power_state.RUNNING, nova  # the rescue VM's
        host = self.sim.view()
        assert self.host_vm(server, host, rescue=True)["power_state"] == "running"
        assert self.host_vm(server, host)["power_state"] == "off"
        # The rescue VM is no stray instance to Nova, and the console is its.
        assert self.driver.list_instances() == [name]
        assert self.driver.list_instance_uuids() == [server["id"]]
        console = self.api.post_server_action(server["id"], {"os-getConsoleOutput": {}})
        assert console["output"] == f"console of {name}-rescue\n", console

        self.unrescue(server)

        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["power_state"] == power_state.RUNNING, nova
        assert self.sim.view() == before
        console = self.api.post_server_action(server["id"], {"os-getConsoleOutput": {}})
        assert console["output"] == f"console of {name}\n", console

    def test_a_failed_rescue_is_error_and_after_reset_state_nova_and_host_agree(
            self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        self.sim.fault("create_vm", "permanent", times=1)

        self.rescue(server)

        nova = self.wait_for_nova(server, "ERROR")
        assert "CreateRescueVM" in (nova["fault"] or ""), nova
        assert self.sim.view() == before
        self.reset_to_active(server)
        self.compute.manager._sync_power_states(self.admin_context())
        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["power_state"] == power_state.RUNNING, nova

    def test_delete_while_rescued_removes_the_rescue_vm_and_the_instance(self) -> None:
        server = self.boot_server()
        self.rescue(server)
        self.wait_for_nova(server, "RESCUE")

        self._delete_server(server)

        vms = self.sim.view()["vms"]
        assert self.instance_name(server) not in vms, vms
        assert self.instance_name(server) + "-rescue" not in vms, vms
