"""A simulated host with its configuration and runner, for functional tests."""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from typing import Any

from rescue_flow import config, hyperv
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.outcome import Outcome
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request
from rescue_flow.simhost import SimulatedHost

GEN1_IMAGE = "11111111-1111-4111-8111-111111111111"
GEN2_IMAGE = "22222222-2222-4222-8222-222222222222"
GEN1_UUID = "aaaaaaaa-0000-4000-8000-000000000001"
GEN2_UUID = "bbbbbbbb-0000-4000-8000-000000000002"
BENCH_UUID = "cccccccc-0000-4000-8000-000000000003"
BENCH_VM = "instance-00000003"
BENCH_DRIVE = b'{"admin_pass": "bench-password", "uuid": "%s"}' % BENCH_UUID.encode()


@dataclasses.dataclass
class Site:
    """One simulated host, its configuration and a runner bound to it."""

    conf: Any
    sim: SimulatedHost
    runner: FlowRunner

    def rescue(self, instance_uuid: str, image_id: str | None = None, **kwargs: Any):
        return self.runner.handle(Request("rescue", instance_uuid, new_request_id(),
                                          image_id=image_id, **kwargs))

    def unrescue(self, instance_uuid: str):
        return self.runner.handle(Request("unrescue", instance_uuid, new_request_id()))

    def view(self) -> str:
        return self.sim.view_json()


REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


# The default [hyperv] instances_path: sites are Windows hosts unless a test
# asks for POSIX paths (path_style="posix": instances in tmp_path).
WINDOWS_INSTANCES = r"C:\OpenStack\Instances"


def make_site(tmp_path: Any, persistence_url: str | None = None,
              path_style: str = "windows", **hyperv_overrides: Any) -> Site:
    """A seeded-image host whose state is in ``tmp_path``; its history is on
    ``persistence_url`` (any SQLAlchemy URL, e.g. the ``db_url`` fixture), else
    SQLite in ``tmp_path``."""
    state_path = os.path.join(tmp_path, "state")
    instances = WINDOWS_INSTANCES if path_style == "windows" \
        else os.path.join(tmp_path, "instances")
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"state_path": state_path, "host": "hv-test"},
        # A Windows site keeps the default instances_path (the same path).
        "hyperv": {"driver": "simulated",
                   **({} if path_style == "windows" else {"instances_path": instances}),
                   "soft_shutdown_timeout": 1, "power_state_poll_interval": 0.01,
                   **hyperv_overrides},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
    }
    if persistence_url is not None:
        overrides["persistence"] = {"connection": persistence_url}
    conf = config.make_conf(overrides=overrides)
    sim = SimulatedHost.init(conf.simulated.state_file, instances, path_style=path_style)
    sim.add_image(GEN1_IMAGE, 1, "vhd")
    sim.add_image(GEN2_IMAGE, 2, "vhdx")
    history = History.from_conf(conf)
    return Site(conf, sim, FlowRunner.from_conf(conf, hyperv.get_host(conf), history))


class Bench:
    """A seeded host whose state file can be put back to a saved point."""

    def __init__(self, tmp_path, generation, nics, persistence_url=None,
                 path_style="windows", rescue_config_drive=None):
        self.site = make_site(str(tmp_path), persistence_url, path_style=path_style)
        image = GEN1_IMAGE if generation == 1 else GEN2_IMAGE
        self.site.sim.add_vm(BENCH_VM, BENCH_UUID, image, nics=nics, config_drive=True)
        self.image = image
        # "iso" or "vhd": each rescue comes with a rescue config drive, written
        # into the instance's folder right before the request, as the Nova
        # driver does. None: no drive (a manual request, a notification).
        self.config_drive_path = None if rescue_config_drive is None else \
            self.site.sim.paths.join(self.site.sim.instances_path, BENCH_VM,
                                     f"configdrive-rescue.{rescue_config_drive}")
        self.state_file = self.site.conf.simulated.state_file
        self.saved: dict[str, dict] = {}

    def view(self) -> str:
        """The host's canonical view, with request ids (in rescue VM notes) masked.

        Each run gets a fresh request id, since a repeated id is not run again.
        """
        return REQUEST_ID.sub("req-*", self.site.view())

    def save(self, name):
        self.saved[name] = self.site.sim.saved_state()

    def restore(self, name):
        self.site.sim.restore_state(self.saved[name])
        self.site.runner.quarantine.remove(BENCH_UUID)
        self.site.sim.clear_faults()
        self.site.sim.clear_calls()

    def request(self, action, **fields):
        """A new request for the bench's instance; a rescue writes its config
        drive first, when the bench has one."""
        if action != "rescue":
            return Request(action, BENCH_UUID, new_request_id(), **fields)
        drive = None
        if self.config_drive_path is not None:
            self.site.sim.put_file(self.config_drive_path, BENCH_DRIVE)
            drive = {"path": self.config_drive_path, "format": "iso9660"}
        return Request(action, BENCH_UUID, new_request_id(), image_id=self.image,
                       config_drive=drive, **fields)

    def view_with_drive(self):
        """The host as it is plus the config drive a rescue request writes:
        what a rescue refused before its flow took the drive leaves."""
        saved = self.site.sim.saved_state()
        self.request("rescue")
        view = self.view()
        self.site.sim.restore_state(saved)
        return view

    def run(self, action, on_step=None):
        return self.site.runner.handle(self.request(action), on_step=on_step)

    def reference(self, action):
        """The calls of a clean run, each with the step it belongs to."""
        self.site.sim.clear_calls()
        starts = [(0, "observe")]  # the runner reads the host before the flow

        def mark(event):
            if event.state == "RUNNING":
                starts.append((len(self.site.sim.calls()), event.step))

        result = self.run(action, on_step=mark)
        assert result.outcome is Outcome.SUCCESS, result.reason
        calls = self.site.sim.calls()
        positions = []
        for index, call in enumerate(calls):
            step = [name for first, name in starts if first <= index][-1]
            occurrence = sum(1 for c in calls[:index] if c["method"] == call["method"])
            positions.append((call["method"], occurrence, step))
        return positions
