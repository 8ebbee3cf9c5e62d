"""The rescue config drive the driver builds with Nova's builder, and its lifetime.

Nova's ConfigDriveBuilder runs for real (``mkisofs_cmd``: genisoimage); the
ISO is read back with ``isoinfo``. qemu-img (the VHD form) is not installed
here: its command line is checked instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from typing import Any
from unittest import mock

import pytest
from nova.conf import CONF
from oslo_concurrency import processutils
from test_driver import UUID, FakeLink, context, image_meta, instance

from rescue_flow_nova import driver, link

PASSWORD = "Rescue-Pa55-in-unit"


def rescue(drv: Any) -> None:
    from nova.compute import task_states

    drv.rescue(context(), instance(task_state=task_states.RESCUING), [], image_meta(),
               PASSWORD, {})


def iso_meta_data(path: str) -> dict[str, Any]:
    out = subprocess.run([shutil.which("isoinfo") or "isoinfo", "-i", path, "-J", "-x",
                          "/openstack/latest/meta_data.json"],
                         capture_output=True, check=True, timeout=30)
    return json.loads(out.stdout)


def test_the_drive_is_an_iso_in_the_instance_folder_with_the_password_for_this_account_only(
        drv: Any, fake_link: FakeLink, host_folders: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    rescue(drv)

    (sent,) = fake_link.sent
    path = str(host_folders / "instance-00000001" / "configdrive-rescue.iso")
    assert sent["config_drive"] == {"path": path, "format": "iso9660"}
    assert iso_meta_data(path) == {"uuid": UUID, "admin_pass": PASSWORD}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert PASSWORD not in json.dumps(sent)
    assert PASSWORD not in caplog.text


def test_without_config_drive_cdrom_the_iso_becomes_a_vhd_disk_by_qemu_img(
        drv: Any, fake_link: FakeLink, host_folders: Any) -> None:
    CONF.set_override("config_drive_cdrom", False, group="hyperv")
    calls = []

    def qemu_img(*args: Any, **kwargs: Any) -> tuple[str, str]:
        calls.append(args)
        shutil.copyfile(args[-2], args[-1])  # what convert would leave there
        return "", ""

    # The builder's own mkisofs run is replaced too: only qemu-img's is checked.
    with mock.patch.object(processutils, "execute", side_effect=qemu_img), \
            mock.patch("nova.virt.configdrive.ConfigDriveBuilder.make_drive",
                       lambda self, path: open(path, "wb").write(b"raw image")):
        rescue(drv)

    (sent,) = fake_link.sent
    path = str(host_folders / "instance-00000001" / "configdrive-rescue.vhd")
    assert sent["config_drive"] == {"path": path, "format": "iso9660"}
    (args,) = calls
    assert args[:6] == ("qemu-img.exe", "convert", "-f", "raw", "-O", "vpc")
    assert args[-1].endswith("configdrive-rescue.vhd")
    assert os.path.exists(path)


@pytest.mark.parametrize(("outcome", "kept"), [
    ("refused", False), ("failed", False), ("quarantined", True)])
def test_a_rescue_that_did_not_happen_deletes_its_drive_unless_the_host_is_left_as_is(
        drv: Any, fake_link: FakeLink, host_folders: Any, outcome: str, kept: bool) -> None:
    fake_link.outcome, fake_link.reason = outcome, "ValidateRescue failed: no"

    with pytest.raises(driver.RescueFlowFailed):
        rescue(drv)

    path = host_folders / "instance-00000001" / "configdrive-rescue.iso"
    assert path.exists() is kept


@pytest.mark.parametrize(("error", "kept"), [
    (link.WorkerUnavailable("no worker"), False),  # nothing was sent
    (link.WorkerTimedOut("no result"), True),      # the worker may still own it
])
def test_a_drive_the_worker_may_still_take_is_kept(
        drv: Any, fake_link: FakeLink, host_folders: Any, error: Exception,
        kept: bool) -> None:
    fake_link.error = error

    with pytest.raises(driver.RescueFlowFailed):
        rescue(drv)

    path = host_folders / "instance-00000001" / "configdrive-rescue.iso"
    assert path.exists() is kept


def test_a_drive_that_cannot_be_built_fails_the_rescue_before_anything_is_sent(
        drv: Any, fake_link: FakeLink) -> None:
    CONF.set_override("mkisofs_cmd", "/nonexistent/mkisofs")
    try:
        with pytest.raises(driver.RescueFlowFailed) as caught:
            rescue(drv)
    finally:
        CONF.clear_override("mkisofs_cmd")

    assert str(caught.value).startswith("could not build the rescue config drive (iso9660)")
    assert str(caught.value).endswith("; host unchanged")
    assert fake_link.sent == []
