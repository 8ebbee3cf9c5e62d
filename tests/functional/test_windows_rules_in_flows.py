"""The flows against the refusals of a Windows host: checkpoints, Secure Boot."""

from __future__ import annotations

import json

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, new_request_id

from rescue_flow.outcome import Outcome
from rescue_flow.requests import Request


def _rescue(site, uuid, image, **image_properties):
    return site.runner.handle(Request("rescue", uuid, new_request_id(), image_id=image,
                                      **image_properties))


def _vm(site, name):
    return json.loads(site.view())["vms"][name]


def test_an_instance_with_checkpoints_is_refused_and_left_alone(site):
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1, checkpoints=2)
    before = site.view()
    assert _vm(site, "instance-00000002")["checkpoints"] == ["checkpoint 1",
                                                             "checkpoint 2"]

    result = _rescue(site, GEN2_UUID, GEN2_IMAGE)

    assert result.outcome is Outcome.REFUSED, result.reason
    assert "checkpoints" in result.reason and ".avhdx" in result.reason
    assert site.view() == before


def test_the_simulated_host_never_lets_a_checkpoint_parent_join_another_vm(site):
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, checkpoints=1,
                    stopped=True)
    vm = site.sim.vmutils
    vm.create_vm("other", False, 2, r"C:\OpenStack\Instances\other")
    vm.create_scsi_controller("other")
    root = r"C:\OpenStack\Instances\instance-00000002\root.vhdx"
    with pytest.raises(Exception, match="checkpoint"):
        vm.attach_drive("other", root, vm.get_vm_scsi_controller("other"), 0)


@pytest.mark.parametrize(("os_type", "template"), [
    ("linux", "MicrosoftUEFICertificateAuthority"),
    ("windows", "MicrosoftWindows")])
def test_the_rescue_vm_gets_secure_boot_when_the_rescue_image_requires_it(
        site, os_type, template):
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    before = site.view()

    result = _rescue(site, GEN2_UUID, GEN2_IMAGE, image_os_secure_boot="required",
                     image_os_type=os_type)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert _vm(site, "instance-00000002-rescue")["secure_boot"] == template
    assert "secure boot: " + template in site.sim.view_text()
    assert site.unrescue(GEN2_UUID).outcome is Outcome.SUCCESS
    assert site.view() == before


def test_a_rescue_vm_has_secure_boot_off_unless_the_image_requires_it(site):
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, secure_boot="windows")

    result = _rescue(site, GEN2_UUID, GEN2_IMAGE, image_os_secure_boot="optional")

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert _vm(site, "instance-00000002-rescue")["secure_boot"] == "off"
    assert _vm(site, "instance-00000002")["secure_boot"] == "MicrosoftWindows"


@pytest.mark.parametrize(("uuid", "name", "image", "os_type", "why"), [
    (GEN1_UUID, "instance-00000001", GEN1_IMAGE, "linux", "generation 2"),
    (GEN2_UUID, "instance-00000002", GEN2_IMAGE, None, "os_type")])
def test_secure_boot_that_cannot_be_given_is_refused_before_any_change(
        site, uuid, name, image, os_type, why):
    site.sim.add_vm(name, uuid, image)
    before = site.view()

    result = _rescue(site, uuid, image, image_os_secure_boot="required",
                     image_os_type=os_type)

    assert result.outcome is Outcome.REFUSED
    assert why in result.reason
    assert site.view() == before


def test_a_failed_secure_boot_step_reverts_the_rescue(site):
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    before = site.view()
    site.sim.set_fault("enable_secure_boot", "permanent")

    result = _rescue(site, GEN2_UUID, GEN2_IMAGE, image_os_secure_boot="required",
                     image_os_type="linux")

    assert result.outcome is Outcome.FAILED
    assert site.view() == before
