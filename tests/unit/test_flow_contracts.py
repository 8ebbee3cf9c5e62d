"""What each flow needs and gives: the data contract between its tasks.

Atom names are TaskFlow's persistence keys: changing one breaks resuming a
flow recorded by an older version, so these lists are pinned here.
"""

from __future__ import annotations

from unittest import mock

from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow


def _names(flow):
    return [atom.name for atom in flow]


def test_rescue_flow_requires_the_request_and_runs_the_steps_in_design_order():
    flow = get_rescue_flow(mock.Mock())

    assert flow.requires == {"instance_uuid", "image_id", "image_generation", "request_id"}
    assert {"instance_vm", "original", "rescue_disk", "rescue_vm"} <= set(flow.provides)
    assert _names(flow) == [
        "ValidateRescue", "SnapshotConfig", "CheckRescueConfigDrive", "StopInstance",
        "CreateRescueDisk", "CreateRescueVM", "AttachRescueDisk", "DetachRootDisk",
        "AttachRootDiskToRescueVM", "AttachRescueConfigDrive", "CopyNetworkIdentity",
        "StartRescueVM"]
    # The config drive is optional: manual requests and notifications have none.
    assert "config_drive" not in flow.requires


def test_unrescue_flow_needs_only_the_instance_and_cleans_up_last():
    flow = get_unrescue_flow(mock.Mock())

    assert flow.requires == {"instance_uuid"}
    assert {"rescue_vm_leftover", "rescue_disk_leftover",
            "rescue_config_drive_leftover"} <= set(flow.provides)
    assert _names(flow) == [
        "ValidateUnrescue", "StopRescueVM", "DetachRootDiskFromRescueVM",
        "AttachRootDiskToInstance", "StartInstance", "DestroyRescueVM",
        "DeleteRescueDisk", "DeleteRescueConfigDrive"]


def test_cleanup_flow_works_from_what_the_host_shows():
    flow = get_cleanup_flow(mock.Mock())

    assert flow.requires == {"instance_vm", "original", "rescue_vm", "rescue_disk"}
    assert _names(flow) == ["EnsureRootDiskOnInstance", "DestroyRescueVM",
                            "DeleteRescueDisk", "DeleteLeftoverRescueConfigDrive"]


def test_every_reversible_step_has_a_revert_of_its_own():
    irreversible = {"ValidateRescue", "SnapshotConfig", "ValidateUnrescue",
                    "DestroyRescueVM", "DeleteRescueDisk", "DeleteRescueConfigDrive"}
    from taskflow import task

    for flow in (get_rescue_flow(mock.Mock()), get_unrescue_flow(mock.Mock())):
        for atom in flow:
            overrides_revert = type(atom).revert is not task.Task.revert
            assert overrides_revert == (atom.name not in irreversible), atom.name
