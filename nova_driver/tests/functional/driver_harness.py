"""Nova whose compute driver is ``RescueFlowMixin`` on Nova's fake driver.

``RescueFlowFakeDriver(RescueFlowMixin, nova.virt.fake.MediumFakeDriver)``
is registered the way Nova's functional tests register a driver: patched
into ``nova.virt.fake`` and named in ``compute_driver``. Its os-win VMUtils
(what the mixin reads for ``get_info`` and ``destroy`` while an instance is
rescued, found as a Hyper-V driver keeps it, ``self._vmops._vmutils``) is
the simulated host's, on the worker's state file: Nova, the worker and the
test see one host.

``[rescue_flow]`` in nova.conf points at the test's worker: the real broker,
the worker's exchange and topics.
"""

from __future__ import annotations

import types
from typing import Any

import simhost_inproc
from harness import RescueFlowNovaTestCase
from nova import conf as nova_conf
from nova.virt import fake
from oswin_sim import oswin_on_sim

CONF = nova_conf.CONF


class FilesOnSim:
    """The driver's files on the simulated host: what nova-compute writes into
    an instance's folder (the rescue config drive), a real host shares with
    Hyper-V through its disks; here the simulated host holds it, content and
    all, so the worker attaches and deletes the very file Nova's builder made."""

    _rescue_flow_sim: Any = None

    def _rescue_flow_place_file(self, built: str, destination: str) -> None:
        with open(built, "rb") as source:
            self._rescue_flow_sim.put_file(destination, source.read())

    def _rescue_flow_remove_file(self, path: str) -> None:
        self._rescue_flow_sim.delete_file(path)


def _driver_class() -> type:
    from rescue_flow_nova.driver import RescueFlowMixin

    class RescueFlowFakeDriver(FilesOnSim, RescueFlowMixin, fake.MediumFakeDriver):
        """The mixin on Nova's fake driver; os-win's VMUtils is the simulated host's."""

        sim_state_file: str | None = None

        def __init__(self, virtapi: Any, read_only: bool = False) -> None:
            super().__init__(virtapi, read_only)
            host = simhost_inproc.open_host(self.sim_state_file)
            self._rescue_flow_sim = host
            self._vmops = types.SimpleNamespace(_vmutils=host.vmutils)

    return RescueFlowFakeDriver


class RescueFlowDriverTestCase(RescueFlowNovaTestCase):
    """Nova with the rescue-flow driver; the worker runs beside it."""

    compute_driver = "fake.RescueFlowFakeDriver"
    driver_timeout = 60  # [rescue_flow] timeout (its minimum)

    def setUp(self) -> None:
        from rescue_flow_nova import conf as rf_conf

        rf_conf.register_opts(CONF)
        super().setUp()

    def before_compute(self) -> None:
        driver = _driver_class()
        driver.sim_state_file = str(self.sim.state_file)
        self.stub_out("nova.virt.fake.RescueFlowFakeDriver", driver)
        worker = self.worker.options()["worker"]
        self.flags(transport_url=self.rabbit_url, exchange=worker["exchange"],
                   requests_topic=worker["requests_topic"],
                   results_topic=worker["results_topic"], timeout=self.driver_timeout,
                   revert_allowance=10, start_timeout=5, group="rescue_flow")
        # Nova's clean-shutdown timeout, which the driver hands to the flow.
        self.flags(shutdown_timeout=5)
        # The rescue config drive goes into the instance's folder on the host
        # the worker serves, as an ISO (a DVD): Nova's builder runs its
        # mkisofs_cmd (genisoimage) for real. The VHD (disk) form needs
        # qemu-img, which these tests do not install: its conversion is
        # covered by the driver's unit tests.
        self.flags(instances_path=str(self.sim.instances_path))
        self.flags(config_drive_cdrom=True, group="hyperv")

    @property
    def driver(self) -> Any:
        return self.compute.driver

    def rescue(self, server: dict[str, Any]) -> dict[str, Any]:
        """POST the rescue action; Nova's answer (adminPass)."""
        return self.api.post_server_action(server["id"], {"rescue": None})

    def unrescue(self, server: dict[str, Any]) -> None:
        self.api.post_server_action(server["id"], {"unrescue": None})

    def requests_for(self, server: dict[str, Any], action: str | None = None
                     ) -> list[dict[str, Any]]:
        """The worker's recorded requests for the server (``status --json``)."""
        found = self.worker.status(server["id"])
        return [r for r in found if action is None or r.get("action") == action]

    def reset_to_active(self, server: dict[str, Any]) -> None:
        """``openstack server set --state active``."""
        self.api.post_server_action(server["id"], {"os-resetState": {"state": "active"}})


# -- the mixin on compute-hyperv's driver, its os-win utils on the simulated host --

def _compute_hyperv_class(generation: int) -> type:
    from compute_hyperv.nova import driver as compute_hyperv_driver

    from rescue_flow_nova.driver import RescueFlowMixin

    class ComputeHyperVOnSim(compute_hyperv_driver.HyperVDriver):
        """compute-hyperv's driver on the simulated host. Its VM-level code
        (get_info, list_instances, power, destroy, consoles) is compute-hyperv's
        own on os-win's interface; what needs a real Windows host (measuring
        it, WMI event listeners, downloading images for spawn) is Nova's fake
        driver's, or seeding the VM as compute-hyperv would have built it."""

        sim_state_file: str | None = None

        def __init__(self, virtapi: Any) -> None:
            self._sim = simhost_inproc.open_host(self.sim_state_file)
            self._host_side = fake.MediumFakeDriver(virtapi)
            with oswin_on_sim(self._sim):
                super().__init__(virtapi)

        def init_host(self, host: str) -> None:
            self._host_side.init_host(host)  # no console workers, no WMI listener

        def spawn(self, context: Any, instance: Any, image_meta: Any, *args: Any,
                  **kwargs: Any) -> None:
            image_id = image_meta.id
            if image_id not in self._sim.view()["images"]:
                self._sim.add_image(image_id, generation=generation,
                                    fmt="vhdx" if generation == 2 else "vhd")
            self._sim.add_vm(instance.name, instance.uuid, image_id, generation=generation,
                             nics=1)

        def get_available_resource(self, nodename: str) -> Any:
            return self._host_side.get_available_resource(nodename)

        def get_available_nodes(self, refresh: bool = False) -> Any:
            return self._host_side.get_available_nodes(refresh)

        def get_nodenames_by_uuid(self, refresh: bool = False) -> Any:
            return self._host_side.get_nodenames_by_uuid(refresh)

        def update_provider_tree(self, provider_tree: Any, nodename: str,
                                 allocations: Any = None) -> None:
            self._host_side.update_provider_tree(provider_tree, nodename, allocations)

        def get_host_ip_addr(self) -> str:
            return self._host_side.get_host_ip_addr()

        def plug_vifs(self, instance: Any, network_info: Any) -> None:
            pass

        def unplug_vifs(self, instance: Any, network_info: Any) -> None:
            pass

    class RescueFlowComputeHyperV(FilesOnSim, RescueFlowMixin, ComputeHyperVOnSim):
        """What ``rescue_flow_nova.compute_hyperv.HyperVDriver`` is (the mixin on
        compute-hyperv's HyperVDriver), with compute-hyperv on the simulated host."""

        def __init__(self, virtapi: Any) -> None:
            super().__init__(virtapi)
            self._rescue_flow_sim = self._sim

    return RescueFlowComputeHyperV


class ComputeHyperVTestCase(RescueFlowDriverTestCase):
    """The rescue-flow driver on compute-hyperv's driver, whose os-win
    utilities are the simulated host's: Nova, compute-hyperv, the worker
    and the test see one host."""

    compute_driver = "fake.RescueFlowComputeHyperV"

    def before_compute(self) -> None:
        super().before_compute()
        driver = _compute_hyperv_class(self.generation)
        driver.sim_state_file = str(self.sim.state_file)
        self.stub_out("nova.virt.fake.RescueFlowComputeHyperV", driver)

    def boot_server(self, seed: bool = False, **seed_kwargs: Any) -> dict[str, Any]:
        # The driver's spawn builds the VM on the simulated host.
        return super().boot_server(seed=False)
