"""Logging in to the rescue system: Nova's rescue password on a config drive.

Nova's API rescue with ``adminPass`` (``openstack server rescue --password``);
the driver builds the rescue config drive with Nova's own builder (a real
ISO 9660 image made by genisoimage), the worker attaches it to the rescue VM,
and the unrescue removes it. The ISO is read back with ``isoinfo`` (from
genisoimage, like ``mkisofs``), so the test checks the metadata cloud-init
would read, not the driver's idea of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

import simhost_inproc
from driver_harness import ComputeHyperVTestCase, RescueFlowDriverTestCase

PASSWORD = "Rescue-Me-7f3a9c"


def meta_data(iso: bytes) -> dict[str, Any]:
    """``openstack/latest/meta_data.json`` of a config drive ISO."""
    isoinfo = shutil.which("isoinfo")
    assert isoinfo, "isoinfo (package genisoimage) is needed to read the ISO back"
    with tempfile.NamedTemporaryFile(suffix=".iso") as image:
        image.write(iso)
        image.flush()
        out = subprocess.run([isoinfo, "-i", image.name, "-J", "-x",
                              "/openstack/latest/meta_data.json"],
                             capture_output=True, check=True, timeout=30)
    return json.loads(out.stdout)


class RescueConfigDriveChecks:
    """The same checks on Nova's fake driver and on compute-hyperv's."""

    def drive_path(self, server: dict[str, Any]) -> str:
        return os.path.join(str(self.sim.instances_path), self.instance_name(server),
                            "configdrive-rescue.iso")

    def read_drive(self, path: str) -> bytes | None:
        return simhost_inproc.open_host(self.sim.state_file).read_file(path)

    def test_rescue_with_a_password_gives_the_rescue_vm_a_config_drive_holding_it(
            self) -> None:
        server = self.boot_server()
        before = self.sim.view()

        answer = self.api.post_server_action(server["id"],
                                             {"rescue": {"adminPass": PASSWORD}})

        assert answer["adminPass"] == PASSWORD
        nova = self.wait_for_nova(server, "RESCUE")
        assert nova["vm_state"] == "rescued" and nova["fault"] is None, nova
        path = self.drive_path(server)
        rescue_vm = self.host_vm(server, rescue=True)
        drives = [drive for slots in rescue_vm["controllers"].values()
                  for drive in slots.values()]
        assert {"path": path, "type": "dvd"} in drives, rescue_vm
        data = self.read_drive(path)
        assert data is not None
        metadata = meta_data(data)
        assert metadata["admin_pass"] == PASSWORD
        assert metadata["uuid"] == server["id"]
        # A path went to the worker, never the password: not in the request it
        # recorded, not in its log, not in nova-compute's log.
        assert PASSWORD not in json.dumps(self.requests_for(server))
        assert PASSWORD not in self.worker.log()
        assert PASSWORD not in self.stdlog.logger.output

        self.unrescue(server)

        nova = self.wait_for_nova(server, "ACTIVE")
        assert nova["fault"] is None, nova
        assert self.read_drive(path) is None
        assert self.sim.view() == before

    def test_a_refused_rescue_leaves_no_config_drive_behind(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        # The worker cannot read the host, so it fails the request before its
        # flow takes the drive: the driver deletes it.
        self.sim.run(("set_fault", {"method": "list_instance_notes", "mode": "permanent",
                                    "times": 1}))

        self.api.post_server_action(server["id"], {"rescue": {"adminPass": PASSWORD}})

        nova = self.wait_for_nova(server, "ERROR")
        assert nova["fault"], nova
        assert self.read_drive(self.drive_path(server)) is None
        assert self.sim.view() == before

    def test_a_failed_attach_of_the_drive_reverts_and_leaves_no_file(self) -> None:
        server = self.boot_server()
        before = self.sim.view()
        # The rescue disk's attach, the root disk's, then the config drive's.
        self.sim.fault("attach_drive", after=2, times=1)

        self.api.post_server_action(server["id"], {"rescue": {"adminPass": PASSWORD}})

        nova = self.wait_for_nova(server, "ERROR")
        assert "Driver Error: AttachRescueConfigDrive failed" in nova["fault"], nova
        assert self.read_drive(self.drive_path(server)) is None
        assert self.sim.view() == before


class RescueConfigDriveOnFakeDriverTest(RescueConfigDriveChecks, RescueFlowDriverTestCase):
    pass


class RescueConfigDriveOnComputeHyperVTest(RescueConfigDriveChecks, ComputeHyperVTestCase):
    pass
