"""A revert that fails quarantines the instance until an operator resets it."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa
from simsite import GEN1_IMAGE, GEN1_UUID, make_site

from rescue_flow import cli
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.outcome import Outcome
from rescue_flow.persistence import quarantine as quarantine_rows
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import History
from rescue_flow.requests import Request


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


# In the history database ----------------------------------------------------

@pytest.fixture
def seeded_db(tmp_path, db_url):
    """``seeded``, with its history on SQLite, then on PostgreSQL."""
    site = make_site(str(tmp_path), db_url)
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    return site


def test_the_quarantine_and_the_failed_request_are_recorded_together(seeded_db):
    _break_reverts(seeded_db)

    result = seeded_db.rescue(GEN1_UUID, GEN1_IMAGE)

    record = seeded_db.runner.history.get(result.request_id)
    assert record.state == schema.FINISHED and record.outcome == "quarantined"
    entry = QuarantineList(seeded_db.runner.history).get(GEN1_UUID)
    assert entry["reason"] == result.reason
    assert entry["request_id"] == result.request_id
    assert entry["host"] == seeded_db.conf.host


def test_a_quarantine_that_cannot_be_written_leaves_the_request_unfinished_too(
        seeded_db, monkeypatch):
    _break_reverts(seeded_db)

    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(quarantine_rows, "record", broken)
    with pytest.raises(Exception, match="disk I/O error"):
        seeded_db.runner.handle(Request("rescue", GEN1_UUID, "req-q1",
                                        image_id=GEN1_IMAGE))

    history = seeded_db.runner.history
    assert history.get("req-q1").state != schema.FINISHED  # rolled back with it
    assert QuarantineList(history).get(GEN1_UUID) is None


def test_an_old_quarantine_file_is_imported_once_and_then_left_alone(tmp_path, db_url):
    site = make_site(str(tmp_path), db_url)
    legacy = os.path.join(site.conf.state_path, "quarantine.json")
    old = {GEN1_UUID: {"reason": "RemoveRescueVM failed: WMI job failed",
                       "request_id": "req-old", "since": "2026-01-02T03:04:05+00:00"}}
    with open(legacy, "w", encoding="utf-8") as handle:
        json.dump(old, handle)
    before = os.stat(legacy)

    imported = QuarantineList(History.from_conf(site.conf)).all()
    assert imported[GEN1_UUID]["reason"] == old[GEN1_UUID]["reason"]
    assert imported[GEN1_UUID]["since"].startswith("2026-01-02T03:04:05")
    assert QuarantineList(History.from_conf(site.conf)).remove(GEN1_UUID)

    # The next start does not bring it back, and the file is untouched.
    assert QuarantineList(History.from_conf(site.conf)).all() == {}
    after = os.stat(legacy)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with open(legacy, encoding="utf-8") as handle:
        assert json.load(handle) == old
