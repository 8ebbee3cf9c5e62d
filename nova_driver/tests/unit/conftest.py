"""Unit tests' nova-compute host: an instances folder in tmp_path, and Nova's
instance metadata without Nova's database (what it adds to a config drive is
Nova's business; that the password and the uuid reach the drive is ours)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from nova.conf import CONF

# The mixin on a recording driver and a fake line to the worker, for every
# unit test module (test_configdrive.py rescues through them too).
from test_driver import drv, fake_link, vm_utils  # noqa: F401


class FakeInstanceMetadata:
    """``InstanceMetadata`` reduced to the file cloud-init reads the password from."""

    def __init__(self, instance: Any, content: Any = None, extra_md: Any = None,
                 network_info: Any = None) -> None:
        self.files = [("openstack/latest/meta_data.json",
                       json.dumps({"uuid": instance.uuid, **(extra_md or {})}))]

    def metadata_for_config_drive(self) -> Any:
        return iter(self.files)


@pytest.fixture(autouse=True)
def host_folders(tmp_path: Any) -> Iterator[Any]:
    """``instances_path`` in tmp_path with instance-00000001's folder; ISO
    config drives (a DVD) unless a test says otherwise."""
    instances = tmp_path / "instances"
    (instances / "instance-00000001").mkdir(parents=True)
    CONF.set_override("instances_path", str(instances))
    CONF.set_override("config_drive_cdrom", True, group="hyperv")
    # Nova's builder names Nova's version in the ISO, read from a release
    # file found through the parsed command line, which unit tests have not.
    with mock.patch("nova.api.metadata.base.InstanceMetadata", FakeInstanceMetadata), \
            mock.patch("nova.version.loaded", True):
        yield instances
    CONF.clear_override("instances_path")
    CONF.clear_override("config_drive_cdrom", group="hyperv")
