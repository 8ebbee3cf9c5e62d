"""Rescue and unrescue end to end: real TaskFlow engines on the simulated host."""

from __future__ import annotations

import json

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID

from rescue_flow.outcome import Outcome

CASES = [("instance-00000001", GEN1_UUID, GEN1_IMAGE),
         ("instance-00000002", GEN2_UUID, GEN2_IMAGE)]


def _vm(site, name):
    return json.loads(site.view())["vms"][name]


@pytest.mark.parametrize(("name", "uuid", "image"), CASES)
def test_rescue_boots_a_rescue_vm_with_the_root_disk_and_the_instance_macs(
        seeded, name, uuid, image):
    before = _vm(seeded, name)

    result = seeded.rescue(uuid, image)

    assert result.outcome is Outcome.SUCCESS, result.reason
    instance, rescue = _vm(seeded, name), _vm(seeded, name + "-rescue")
    assert instance["power_state"] == "off"
    assert rescue["power_state"] == "running"
    assert (rescue["generation"], rescue["memory_mb"], rescue["vcpus"]) == (
        before["generation"], before["memory_mb"], before["vcpus"])
    boot_slot = "IDE 0" if before["generation"] == 1 else "SCSI 0"
    assert rescue["controllers"][boot_slot]["0"]["path"].endswith(
        "root-rescue.vhd" if before["generation"] == 1 else "root-rescue.vhdx")
    root = next(slot["path"] for ctrl in before["controllers"].values()
                for slot in ctrl.values() if "root.vhd" in slot["path"])
    assert root in [slot["path"] for slot in rescue["controllers"]["SCSI 0"].values()]
    assert root not in [slot["path"] for ctrl in instance["controllers"].values()
                        for slot in ctrl.values()]
    assert sorted((n["mac"], n["switch"]) for n in rescue["nics"]) == sorted(
        (n["mac"], n["switch"]) for n in before["nics"])


def test_gen2_rescue_vm_boots_the_rescue_disk_before_the_network(seeded):
    seeded.rescue(GEN2_UUID, GEN2_IMAGE)

    boot_order = _vm(seeded, "instance-00000002-rescue")["boot_order"]

    assert boot_order[0].endswith("root-rescue.vhdx")


@pytest.mark.parametrize(("name", "uuid", "image"), CASES)
def test_unrescue_gives_back_exactly_the_host_before_the_rescue(seeded, name, uuid, image):
    before = seeded.view()
    assert seeded.rescue(uuid, image).outcome is Outcome.SUCCESS

    result = seeded.unrescue(uuid)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert result.leftovers == []
    assert seeded.view() == before


def test_rescue_without_an_image_uses_the_image_the_instance_booted_from(seeded):
    result = seeded.rescue(GEN2_UUID)

    assert result.outcome is Outcome.SUCCESS, result.reason
    rescue_disk = _vm(seeded, "instance-00000002-rescue")["controllers"]["SCSI 0"]["0"]
    parent = json.loads(seeded.view())["files"][rescue_disk["path"]]["parent"]
    assert parent.endswith(GEN2_IMAGE + ".vhdx")


def test_rescuing_twice_has_the_effect_of_rescuing_once(seeded):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    once = seeded.view()

    again = seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    assert again.outcome is Outcome.NOTHING_TO_DO
    assert "already rescued" in again.reason
    assert seeded.view() == once


def test_unrescuing_twice_has_the_effect_of_unrescuing_once(seeded):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    seeded.unrescue(GEN1_UUID)
    once = seeded.view()

    again = seeded.unrescue(GEN1_UUID)

    assert again.outcome is Outcome.NOTHING_TO_DO
    assert "not rescued" in again.reason
    assert seeded.view() == once


def test_a_stopped_instance_is_rescued_without_being_started(site):
    site.sim.add_vm("instance-00000003", GEN1_UUID, GEN1_IMAGE, stopped=True)

    result = site.rescue(GEN1_UUID, GEN1_IMAGE)

    assert result.outcome is Outcome.SUCCESS
    assert _vm(site, "instance-00000003")["power_state"] == "off"
    assert _vm(site, "instance-00000003-rescue")["power_state"] == "running"


def test_a_guest_that_ignores_the_soft_shutdown_is_powered_off_after_the_timeout(site):
    site.sim.add_vm("instance-00000003", GEN1_UUID, GEN1_IMAGE, soft_shutdown="hang")

    result = site.rescue(GEN1_UUID, GEN1_IMAGE)

    assert result.outcome is Outcome.SUCCESS
    methods = [call["method"] for call in site.sim.calls()]
    assert "soft_shutdown_vm" in methods
    assert {"method": "set_vm_state",
            "args": {"vm_name": "instance-00000003", "req_state": 3}} in site.sim.calls()


def test_a_rescue_records_the_original_configuration_in_the_rescue_vm_notes(seeded):
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    notes = _vm(seeded, "instance-00000001-rescue")["notes"]

    assert notes[:2] == ["rescue-flow:rescue-vm", GEN1_UUID]
    record = json.loads(notes[2])
    assert record["name"] == "instance-00000001"
    assert record["power_state"] == "running"
    assert len(record["nics"]) == 2


def test_result_reports_each_step_duration(seeded):
    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    assert set(result.step_durations) == {
        "ValidateRescue", "SnapshotConfig", "CheckRescueConfigDrive", "StopInstance",
        "CreateRescueDisk", "CreateRescueVM", "AttachRescueDisk", "DetachRootDisk",
        "AttachRootDiskToRescueVM", "AttachRescueConfigDrive", "CopyNetworkIdentity",
        "StartRescueVM"}
    assert all(seconds >= 0 for seconds in result.step_durations.values())


def test_an_unrescue_cut_short_between_the_two_vms_is_finished_by_the_next_unrescue(
        seeded):
    before = seeded.view()
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    # What a run killed between "detach from the rescue VM" and "attach to the
    # instance" leaves, with no history to resume it from.
    host = seeded.runner.host
    record = host.find_rescue_vm(GEN1_UUID).record
    host.stop_vm("instance-00000001-rescue")
    host.detach_disk("instance-00000001-rescue", record.root_disk.path)

    result = seeded.unrescue(GEN1_UUID)

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert seeded.view() == before


def test_cleaning_up_leftovers_leaves_a_stopped_instance_stopped(site):
    site.sim.add_vm("instance-00000003", GEN1_UUID, GEN1_IMAGE)  # running
    site.rescue(GEN1_UUID, GEN1_IMAGE)
    # Clean-up is retried [retry] attempts times: fail every one of them.
    site.sim.set_fault("destroy_vm", "permanent", times=site.conf.retry.attempts)
    assert site.unrescue(GEN1_UUID).leftovers
    site.runner.host.power_off("instance-00000003")  # the operator stopped it since
    stopped = site.view()

    result = site.unrescue(GEN1_UUID)  # only the leftovers to remove

    assert result.outcome is Outcome.SUCCESS, result.reason
    assert _vm(site, "instance-00000003")["power_state"] == "off"
    assert "instance-00000003-rescue" not in json.loads(site.view())["vms"]
    assert "instance-00000003-rescue" in json.loads(stopped)["vms"]
