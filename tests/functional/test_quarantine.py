"""A revert that fails quarantines the instance until an operator resets it."""

from __future__ import annotations

import json

from simsite import GEN1_IMAGE, GEN1_UUID

from rescue_flow import cli
from rescue_flow.outcome import Outcome


def _break_reverts(site):
    # StopInstance fails (soft and hard), and so does its revert.
    site.sim.set_fault("soft_shutdown_vm", "permanent")
    site.sim.set_fault("set_vm_state", "permanent")


def test_a_failed_revert_quarantines_the_instance_with_both_errors(seeded):
    _break_reverts(seeded)

    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE)

    assert result.outcome is Outcome.QUARANTINED
    assert result.failed_step == "StopInstance"
    assert "StopInstance failed" in result.reason
    assert "then reverting StopInstance failed" in result.reason


def test_a_quarantined_instance_is_refused_without_touching_the_host(seeded):
    _break_reverts(seeded)
    first = seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    seeded.sim.clear_faults()
    seeded.sim.clear_calls()

    for again in (seeded.rescue(GEN1_UUID, GEN1_IMAGE), seeded.unrescue(GEN1_UUID)):
        assert again.outcome is Outcome.QUARANTINED
        assert first.reason in again.reason
        assert f"rescue-flow reset {GEN1_UUID}" in again.reason
    assert seeded.sim.calls() == []


def test_reset_lets_requests_through_again(seeded, tmp_path, capsys):
    _break_reverts(seeded)
    seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    seeded.sim.clear_faults()
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(f"[DEFAULT]\nstate_path = {seeded.conf.state_path}\n")

    assert cli.main(["--config-file", str(config_file), "reset", GEN1_UUID]) == 0

    assert "out of quarantine" in capsys.readouterr().out
    assert seeded.rescue(GEN1_UUID, GEN1_IMAGE).outcome is Outcome.SUCCESS


def test_quarantined_lists_each_instance_with_its_reason(seeded, tmp_path, capsys):
    _break_reverts(seeded)
    result = seeded.rescue(GEN1_UUID, GEN1_IMAGE)
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(f"[DEFAULT]\nstate_path = {seeded.conf.state_path}\n")

    assert cli.main(["--config-file", str(config_file), "quarantined", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert list(listed) == [GEN1_UUID]
    assert listed[GEN1_UUID]["reason"] == result.reason
