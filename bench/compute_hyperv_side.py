"""B6's other side: compute-hyperv 16.0.0's own rescue and unrescue, os-win on
the simulated host. Runs in ``.venv-nova`` (Nova 2023.1, compute-hyperv,
os-win 5.9.0), never in the worker's environment, and imports nothing of
rescue-flow but its simulated host (loaded as the Nova tests load it,
``nova_driver/tests/functional/simhost_inproc.py``).

A line-per-command server on stdin/stdout, so that the benchmark (in the
worker's environment) drives it round by round and reads the host itself:

    {"cmd": "setup", "state_file", "instances_path", "name", "uuid", "image", "generation"}
    {"cmd": "run", "action": "rescue" | "unrescue"}  -> {"ok", "error", "seconds"}

What a rescue is here is what Nova 2023.1's compute manager makes of one on
this driver: ``driver.power_off(instance, timeout, retry_interval)`` (its
clean shutdown, ``[DEFAULT] shutdown_timeout``), then ``driver.rescue``,
which runs ``vmops.rescue_instance``; an unrescue is ``vmops.unrescue_instance``.

What is not os-win in compute-hyperv runs against the real file system on
Windows; so that it sees what Windows would: the instance folders and the
cached images exist as real (empty) files under ``instances_path``, and
``fileutils.delete_if_exists`` (unrescue's removal of the rescue disk, a
plain ``os.unlink`` on Windows) removes the file on the simulated host,
through its PathUtils, so it is logged among the changes. What needs a
Windows host and is not a rescue's concern (hostutils, the WMI power-state
listener, WMI jobs) are stand-ins, as in the Nova tests
(``nova_driver/tests/functional/oswin_sim.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from typing import Any
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "nova_driver", "tests", "functional"))

import simhost_inproc  # noqa: E402  (after the path they are found on)
from oswin_sim import oswin_on_sim, pathutils_on_sim  # noqa: E402

SHUTDOWN_TIMEOUT = 60  # Nova's [DEFAULT] shutdown_timeout default
SHUTDOWN_RETRY_INTERVAL = 10  # Nova's [compute] shutdown_retry_interval default
class Side:
    def __init__(self, spec: dict[str, Any]) -> None:
        from compute_hyperv.nova import driver as chv_driver
        from compute_hyperv.nova import hostops, vmops
        from nova import conf, context, objects
        from nova.compute import vm_states
        from nova.tests.unit import fake_instance

        objects.register_all()
        conf.CONF([], project="nova", default_config_files=[])
        conf.CONF.set_override("instances_path", spec["instances_path"])
        self.vm_states = vm_states
        self.sim = simhost_inproc.open_host(spec["state_file"])
        _mirror_folders(self.sim, spec["instances_path"])
        self._patches = [oswin_on_sim(self.sim), *pathutils_on_sim(self.sim),
                         mock.patch.object(vmops.fileutils, "delete_if_exists",
                                           self._delete_if_exists),
                         # Nova's compute API (host maintenance mode): no RPC here.
                         mock.patch.object(hostops.api, "API")]
        for patch in self._patches:
            patch.start()
        self.driver = chv_driver.HyperVDriver(mock.MagicMock(name="virtapi"))
        self.context = context.get_admin_context()
        generation = int(spec["generation"])
        self.image = spec["image"]
        self.generation = generation
        self.instance = fake_instance.fake_instance_obj(
            self.context, uuid=spec["uuid"], image_ref=spec["image"],
            vm_state=vm_states.ACTIVE, config_drive="")
        self.instance.system_metadata = {
            "image_disk_format": "vhdx" if generation == 2 else "vhd"}
        self.instance.trusted_certs = None
        self.instance.flavor.root_gb = 10
        # fake_instance_obj names it after its id: the seeded VM's name instead.
        type(self.instance).name = property(lambda _self, n=spec["name"]: n)

    def _delete_if_exists(self, path: str, remove: Any = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.sim.pathutils.remove(path)

    def run(self, action: str) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            if action == "rescue":
                self.instance.vm_state = self.vm_states.ACTIVE
                # Nova's compute manager: the clean power-off, then the driver.
                self.driver.power_off(self.instance, SHUTDOWN_TIMEOUT,
                                      SHUTDOWN_RETRY_INTERVAL)
                image_meta = {"id": self.image, "properties": {
                    "hw_machine_type": f"hyperv-gen{self.generation}"}}
                self.driver._vmops.rescue_instance(self.context, self.instance, [],
                                                   image_meta, "rescue-password")
            else:
                self.instance.vm_state = self.vm_states.RESCUED
                self.driver.unrescue(self.context, self.instance)
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                    "seconds": time.perf_counter() - began}
        return {"ok": True, "error": None, "seconds": time.perf_counter() - began}


def _mirror_folders(sim: Any, instances_path: str) -> None:
    """The real folders and (empty) image files compute-hyperv looks at with
    ``os`` directly, as Windows would show them."""
    view = sim.view()
    for path in view["files"]:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        if os.path.basename(folder) == "_base":
            open(path, "a").close()  # compute-hyperv touches it (os.utime)
    for name in view["vms"]:
        os.makedirs(os.path.join(instances_path, name), exist_ok=True)


def main() -> int:
    side: Side | None = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "setup":
                side = Side(request)
                answer: dict[str, Any] = {"ok": True}
            elif request["cmd"] == "run" and side is not None:
                answer = side.run(request["action"])
            else:
                answer = {"ok": False, "error": f"unknown command {request['cmd']}"}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
