"""A simulated host with its configuration and runner, for functional tests."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from rescue_flow import config, hyperv
from rescue_flow.requests import Request
from rescue_flow.runner import FlowRunner
from rescue_flow.simhost import SimulatedHost

GEN1_IMAGE = "11111111-1111-4111-8111-111111111111"
GEN2_IMAGE = "22222222-2222-4222-8222-222222222222"
GEN1_UUID = "aaaaaaaa-0000-4000-8000-000000000001"
GEN2_UUID = "bbbbbbbb-0000-4000-8000-000000000002"


@dataclasses.dataclass
class Site:
    """One simulated host, its configuration and a runner bound to it."""

    conf: Any
    sim: SimulatedHost
    runner: FlowRunner

    def rescue(self, instance_uuid: str, image_id: str | None = None, **kwargs: Any):
        return self.runner.handle(Request("rescue", instance_uuid, "req-rescue",
                                          image_id=image_id, **kwargs))

    def unrescue(self, instance_uuid: str):
        return self.runner.handle(Request("unrescue", instance_uuid, "req-unrescue"))

    def view(self) -> str:
        return self.sim.view_json()


def make_site(tmp_path: Any, **hyperv_overrides: Any) -> Site:
    state_path = os.path.join(tmp_path, "state")
    instances = os.path.join(tmp_path, "instances")
    conf = config.make_conf(overrides={
        "DEFAULT": {"state_path": state_path, "host": "hv-test"},
        "hyperv": {"driver": "simulated", "instances_path": instances,
                   "soft_shutdown_timeout": 1, "power_state_poll_interval": 0.01,
                   **hyperv_overrides},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
    })
    sim = SimulatedHost.init(conf.simulated.state_file, instances)
    sim.add_image(GEN1_IMAGE, 1, "vhd")
    sim.add_image(GEN2_IMAGE, 2, "vhdx")
    return Site(conf, sim, FlowRunner.from_conf(conf, hyperv.get_host(conf)))
