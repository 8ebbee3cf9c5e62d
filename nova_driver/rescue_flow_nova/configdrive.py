"""The rescue config drive: how Nova's rescue password reaches the rescue system.

Nova gives ``rescue`` a password (the user's ``--password``, or one it made
up and returned as ``adminPass``). As compute-hyperv's
``vmops._create_config_drive(..., rescue=True)`` does, the driver writes it
into a config drive built with Nova's own builder
(``nova.virt.configdrive.ConfigDriveBuilder`` over
``nova.api.metadata.base.InstanceMetadata``: ``meta_data.json`` carries
``admin_pass`` and the instance's uuid), in Nova's ``[DEFAULT]
config_drive_format`` with its ``mkisofs_cmd``. cloud-init or
cloudbase-init in the rescue image sets the password from it.

compute-hyperv's file names and kinds, in the instance's folder:

- ``configdrive-rescue.iso``, attached as a DVD, when the format is iso9660
  and ``[hyperv] config_drive_cdrom`` is set;
- otherwise ``configdrive-rescue.vhd``, a disk: the raw image converted with
  ``[hyperv] qemu_img_cmd convert -f raw -O vpc`` (a vfat image is always a
  disk: a DVD holds only ISO 9660).

Unlike compute-hyperv, the password is always injected (compute-hyperv asks
``[hyperv] config_drive_inject_password``, False by default): a rescue
password that does not reach the guest is of no use, and this file exists
for nothing else.

The drive is built in a private temporary folder (0700) and moved into the
instance's folder readable by this account only (0600 on POSIX; on Windows
the file inherits the instance folder's ACL, which Nova's folder gives to
the nova-compute account and Administrators; Hyper-V grants the VM access
when the worker attaches it). Only its path goes to the worker. Nothing here
logs the metadata: Nova's builder's ``repr`` lists it, password included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Callable

from nova.conf import CONF

from rescue_flow_nova import protocol

ISO9660 = "iso9660"


def instance_dir(instance: Any) -> str:
    """The instance's folder as compute-hyperv's pathutils names it."""
    return os.path.join(CONF.instances_path, instance.name)


def drive_paths(instance: Any) -> list[str]:
    """Both paths a rescue config drive of ``instance`` may have (ISO, VHD)."""
    return [os.path.join(instance_dir(instance), protocol.RESCUE_CONFIG_DRIVE_STEM + ext)
            for ext in (".iso", ".vhd")]


def drive_name() -> str:
    """``configdrive-rescue.iso`` (a DVD) or ``.vhd`` (a disk), by nova.conf."""
    as_dvd = CONF.config_drive_format == ISO9660 and CONF.hyperv.config_drive_cdrom
    return protocol.RESCUE_CONFIG_DRIVE_STEM + (".iso" if as_dvd else ".vhd")


def build(instance: Any, network_info: Any, password: str,
          place: Callable[[str, str], None]) -> dict[str, str]:
    """Build the rescue config drive, hand it to ``place(built, destination)``,
    and return the request's ``config_drive`` field: ``{"path", "format"}``."""
    # Imported here: they pull in most of Nova, which the protocol's
    # contract test (run outside nova-compute too) must not need.
    from nova.api.metadata import base as instance_metadata
    from nova.virt import configdrive
    from oslo_concurrency import processutils

    name = drive_name()
    metadata = instance_metadata.InstanceMetadata(
        instance, content=None, extra_md={"admin_pass": password},
        network_info=network_info)
    with tempfile.TemporaryDirectory(prefix="rescue-flow-") as private:
        raw = os.path.join(private, "configdrive-rescue.raw")
        with configdrive.ConfigDriveBuilder(instance_md=metadata) as builder:
            builder.make_drive(raw)
        built = os.path.join(private, name)
        if name.endswith(".iso"):
            os.rename(raw, built)
        else:
            processutils.execute(CONF.hyperv.qemu_img_cmd, "convert", "-f", "raw",
                                 "-O", "vpc", raw, built, attempts=1)
        os.chmod(built, 0o600)
        destination = os.path.join(instance_dir(instance), name)
        place(built, destination)
    return {"path": destination, "format": CONF.config_drive_format}


def place_on_this_host(built: str, destination: str) -> None:
    """Copy ``built`` to ``destination``, created 0600 (a leftover drive of an
    earlier rescue is overwritten: it is the same instance's)."""
    descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(destination, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(descriptor, "wb") as target, open(built, "rb") as source:
        shutil.copyfileobj(source, target)


def remove_from_this_host(path: str) -> None:
    """Delete a drive no flow owns (the worker refused or failed the rescue
    before its CheckRescueConfigDrive step); gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
