"""Each way a rescue can be refused: a distinct error, a clear reason, no change."""

from __future__ import annotations

import pytest
import taskflow.engines
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID

from rescue_flow import exceptions, hyperv
from rescue_flow.flows import get_rescue_flow
from rescue_flow.outcome import Outcome

UNCACHED = "99999999-9999-4999-8999-999999999999"


def _run_rescue_flow(site, instance_uuid, image_id, image_generation=None):
    store = {"instance_uuid": instance_uuid, "image_id": image_id,
             "image_generation": image_generation, "request_id": "req-1"}
    engine = taskflow.engines.load(get_rescue_flow(hyperv.get_host(site.conf)),
                                   store=store, engine="serial")
    engine.run()


@pytest.mark.parametrize(("setup", "instance", "image", "generation", "error", "words"), [
    (None, "dddddddd-0000-4000-8000-000000000004", GEN1_IMAGE, None,
     exceptions.InstanceNotFound, "no VM on this host"),
    ("bfv", GEN1_UUID, GEN1_IMAGE, None,
     exceptions.BootFromVolumeNotSupported, "boots from a volume"),
    (None, GEN1_UUID, UNCACHED, None,
     exceptions.RescueImageNotCached, "not in this host's image cache"),
    (None, GEN1_UUID, GEN2_IMAGE, 2,
     exceptions.GenerationMismatch, "Gen2 VMs; instance"),
    (None, GEN2_UUID, GEN1_IMAGE, None,
     exceptions.UnsupportedImageFormat, "a Gen2 VM boots only VHDX"),
])
def test_each_refusal_is_its_own_error_and_changes_nothing(
        site, setup, instance, image, generation, error, words):
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE,
                    boot_from_volume=setup == "bfv")
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE)
    before = site.view()

    with pytest.raises(error, match=words):
        _run_rescue_flow(site, instance, image, generation)
    result = site.rescue(instance, image, image_generation=generation)

    assert result.outcome is Outcome.REFUSED
    assert words in result.reason
    assert site.view() == before


def test_an_instance_folder_outside_instances_path_is_refused(site, tmp_path):
    # A VM whose disks live outside instances_path: rescue would create the
    # rescue disk there, so it is refused.
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE)
    host = hyperv.get_host(site.conf)
    host.instances_path = str(tmp_path / "elsewhere")

    with pytest.raises(exceptions.PathEscapesInstancesDir, match="would leave"):
        taskflow.engines.run(get_rescue_flow(host), store={
            "instance_uuid": GEN1_UUID, "image_id": GEN1_IMAGE,
            "image_generation": None, "request_id": "req-1"})


def test_a_leftover_rescue_disk_is_cleaned_up_before_a_new_rescue(site):
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE)
    before = site.view()
    assert site.rescue(GEN1_UUID, GEN1_IMAGE).outcome is Outcome.SUCCESS
    site.sim.set_fault("destroy_vm", "permanent", times=site.conf.retry.attempts)
    unrescued = site.unrescue(GEN1_UUID)
    assert unrescued.outcome is Outcome.SUCCESS and unrescued.leftovers

    again = site.rescue(GEN1_UUID, GEN1_IMAGE)

    assert again.outcome is Outcome.SUCCESS, again.reason
    assert site.unrescue(GEN1_UUID).outcome is Outcome.SUCCESS
    assert site.view() == before


def test_a_gen1_instance_is_rescued_from_a_vhdx_image_too(site):
    # A Gen1 VM boots VHD or VHDX; the cache is searched for VHD first (the
    # likelier), then VHDX, and the rescue disk takes the image's format.
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE)
    before = site.view()

    result = site.rescue(GEN1_UUID, GEN2_IMAGE)

    assert result.outcome is Outcome.SUCCESS, result.reason
    rescue_disks = [path for path in site.sim.view()["files"] if "root-rescue" in path]
    assert [path.lower().rsplit(".", 1)[1] for path in rescue_disks] == ["vhdx"]
    assert site.unrescue(GEN1_UUID).outcome is Outcome.SUCCESS
    assert site.view() == before
