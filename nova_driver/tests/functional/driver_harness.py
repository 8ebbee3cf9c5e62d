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

CONF = nova_conf.CONF


def _driver_class() -> type:
    from rescue_flow_nova.driver import RescueFlowMixin

    class RescueFlowFakeDriver(RescueFlowMixin, fake.MediumFakeDriver):
        """The mixin on Nova's fake driver; os-win's VMUtils is the simulated host's."""

        sim_state_file: str | None = None

        def __init__(self, virtapi: Any, read_only: bool = False) -> None:
            super().__init__(virtapi, read_only)
            host = simhost_inproc.open_host(self.sim_state_file)
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
