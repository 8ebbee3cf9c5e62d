"""``rescue-flow status`` and ``rescue-flow purge`` through the real entry point.

Each test writes a config file pointing at its own database (SQLite, then
PostgreSQL), fills the history by running requests on a simulated host, and
calls ``rescue_flow.cli.main`` as an operator's shell would.
"""

from __future__ import annotations

import datetime
import json

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, make_site, new_request_id

from rescue_flow import cli
from rescue_flow.flows import get_rescue_flow, get_unrescue_flow
from rescue_flow.outcome import Outcome
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import utcnow
from rescue_flow.requests import Request


@pytest.fixture
def site(tmp_path, db_url):
    site = make_site(str(tmp_path), db_url)
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    yield site
    site.runner.history.close()


@pytest.fixture
def rescue_flow_cli(tmp_path, site, db_url, capsys):
    """Run ``rescue-flow ARGS...`` with a config file for this site's database;
    returns (exit code, what it printed on stdout, on stderr)."""
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(
        f"[DEFAULT]\nhost = {site.conf.host}\nstate_path = {site.conf.state_path}\n"
        f"[persistence]\nconnection = {db_url}\n")
    capsys.readouterr()

    def run(*args):
        code = cli.main(["--config-file", str(config_file), *args])
        printed = capsys.readouterr()
        return code, printed.out, printed.err

    return run


def rescue(site, instance_uuid=GEN1_UUID):
    image = GEN1_IMAGE if instance_uuid == GEN1_UUID else GEN2_IMAGE
    return site.runner.handle(Request("rescue", instance_uuid, new_request_id(),
                                      image_id=image))


def unrescue(site, instance_uuid=GEN1_UUID):
    return site.runner.handle(Request("unrescue", instance_uuid, new_request_id()))


def step_names(factory, site):
    return [atom.name for atom in factory(site.runner.host)]


def age(site, request_id, days):
    table = schema.requests_table
    with site.runner.history.engine.begin() as connection:
        connection.execute(table.update().where(table.c.request_id == request_id).values(
            finished_at=utcnow() - datetime.timedelta(days=days)))


# status ----------------------------------------------------------------------


def test_status_on_an_empty_history_says_nothing_is_recorded(rescue_flow_cli):
    assert rescue_flow_cli("status")[:2] == (0, "no requests recorded\n")


def test_status_lists_each_request_newest_first_with_outcome_and_steps(site,
                                                                       rescue_flow_cli):
    rescued = rescue(site)
    unrescued = unrescue(site)

    code, out, _ = rescue_flow_cli("status")

    assert code == 0
    headlines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(headlines) == 2
    assert "unrescue" in headlines[0] and unrescued.request_id in headlines[0]
    assert "success" in headlines[0] and GEN1_UUID in headlines[0]
    assert " rescue " in headlines[1] and rescued.request_id in headlines[1]
    for step in step_names(get_rescue_flow, site) + step_names(get_unrescue_flow, site):
        assert f" {step} " in out
    assert out.count("SUCCESS") == len(step_names(get_rescue_flow, site)) + len(
        step_names(get_unrescue_flow, site))


def test_status_of_one_instance_shows_only_that_instances_requests(site, rescue_flow_cli):
    rescue(site, GEN1_UUID)
    other = rescue(site, GEN2_UUID)

    code, out, _ = rescue_flow_cli("status", GEN2_UUID)

    assert code == 0
    assert other.request_id in out and GEN2_UUID in out
    assert GEN1_UUID not in out


def test_status_refuses_an_instance_id_that_is_not_a_uuid(rescue_flow_cli):
    code, out, err = rescue_flow_cli("status", "not-a-uuid")

    assert code == 2
    assert (err or out).startswith("rescue-flow status: ")


def test_status_json_gives_outcome_and_every_steps_state_and_duration(site,
                                                                      rescue_flow_cli):
    site.sim.set_fault("attach_drive", "permanent")
    failed = rescue(site, GEN2_UUID)
    site.sim.clear_faults()
    rescued = rescue(site, GEN1_UUID)

    code, out, _ = rescue_flow_cli("status", "--json")

    assert code == 0
    newest, oldest = json.loads(out)
    flow_order = step_names(get_rescue_flow, site)
    assert (newest["request_id"], newest["outcome"], newest["state"]) == (
        rescued.request_id, "success", "finished")
    assert [(s["flow"], s["step"], s["state"]) for s in newest["steps"]] == [
        ("rescue", step, "SUCCESS") for step in flow_order]
    assert all(isinstance(s["seconds"], float) and s["seconds"] >= 0
               for s in newest["steps"])
    assert newest["finished_at"].endswith("Z") and newest["received_at"].endswith("Z")

    assert (oldest["request_id"], oldest["outcome"]) == (failed.request_id, "failed")
    assert oldest["reason"].startswith("AttachRescueDisk failed")
    states = {s["step"]: s["state"] for s in oldest["steps"]}
    assert states["AttachRescueDisk"] == "REVERTED"
    assert states["StartRescueVM"] == "PENDING"
    assert all(s["seconds"] is None for s in oldest["steps"] if s["state"] == "PENDING")


def test_status_json_shows_a_request_that_has_not_finished(site, rescue_flow_cli):
    request = Request("rescue", GEN1_UUID, new_request_id(), image_id=GEN1_IMAGE)
    site.runner.history.accept(request)

    code, out, _ = rescue_flow_cli("status", "--json")

    [item] = json.loads(out)
    assert code == 0
    assert (item["request_id"], item["state"], item["outcome"], item["finished_at"],
            item["steps"]) == (request.request_id, "accepted", None, None, [])


def test_status_limit_keeps_the_newest_requests(site, rescue_flow_cli):
    rescue(site)
    newest = unrescue(site)

    code, out, _ = rescue_flow_cli("status", "--json", "--limit", "1")

    assert code == 0
    assert [item["request_id"] for item in json.loads(out)] == [newest.request_id]


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_status_refuses_a_limit_below_one_instead_of_saying_nothing_is_recorded(
        site, rescue_flow_cli, limit):
    rescue(site)

    with pytest.raises(SystemExit) as exit_info:
        rescue_flow_cli("status", "--limit", limit)

    assert exit_info.value.code == 2


# purge -----------------------------------------------------------------------


@pytest.mark.parametrize("days", ["0", "-1", "nan", "inf", "soon"])
def test_purge_refuses_days_that_would_forget_everything_or_mean_nothing(
        site, rescue_flow_cli, capsys, days):
    rescue(site)

    with pytest.raises(SystemExit) as exit_info:
        rescue_flow_cli("purge", "--older-than", days)

    assert exit_info.value.code == 2
    assert "--older-than" in capsys.readouterr().err
    _, listed, _ = rescue_flow_cli("status", "--json")
    assert len(json.loads(listed)) == 1


def test_purge_all_forgets_every_finished_request_and_keeps_unfinished_ones(
        site, rescue_flow_cli):
    rescue(site)
    unrescue(site)
    waiting = Request("rescue", GEN1_UUID, new_request_id(), image_id=GEN1_IMAGE)
    site.runner.history.accept(waiting)

    code, out, _ = rescue_flow_cli("purge", "--all")

    assert (code, out) == (0, "purged 2 finished request(s)\n")
    _, listed, _ = rescue_flow_cli("status", "--json")
    assert [item["request_id"] for item in json.loads(listed)] == [waiting.request_id]


def test_purge_needs_days_or_all(rescue_flow_cli):
    with pytest.raises(SystemExit) as exit_info:
        rescue_flow_cli("purge")
    assert exit_info.value.code == 2


def test_purge_forgets_finished_requests_older_than_the_given_days(site, rescue_flow_cli):
    old = rescue(site)
    recent = unrescue(site)
    assert (old.outcome, recent.outcome) == (Outcome.SUCCESS, Outcome.SUCCESS)
    age(site, old.request_id, days=31)

    code, out, _ = rescue_flow_cli("purge", "--older-than", "30")

    assert (code, out) == (0, "purged 1 finished request(s) older than 30 days\n")
    _, listed, _ = rescue_flow_cli("status", "--json")
    assert [item["request_id"] for item in json.loads(listed)] == [recent.request_id]


def test_purge_takes_fractions_of_a_day_and_keeps_newer_requests(site, rescue_flow_cli):
    old = rescue(site)
    age(site, old.request_id, days=0.5)
    recent = unrescue(site)

    assert rescue_flow_cli("purge", "--older-than", "1")[:2] == (
        0, "purged 0 finished request(s) older than 1 days\n")
    assert rescue_flow_cli("purge", "--older-than", "0.25")[:2] == (
        0, "purged 1 finished request(s) older than 0.25 days\n")
    _, listed, _ = rescue_flow_cli("status", "--json")
    assert [item["request_id"] for item in json.loads(listed)] == [recent.request_id]


def test_purge_keeps_an_unfinished_request_however_old(site, rescue_flow_cli):
    request = Request("rescue", GEN1_UUID, new_request_id(), image_id=GEN1_IMAGE)
    site.runner.history.accept(request)
    table = schema.requests_table
    with site.runner.history.engine.begin() as connection:
        connection.execute(table.update().values(
            received_at=utcnow() - datetime.timedelta(days=400)))

    code, out, _ = rescue_flow_cli("purge", "--older-than", "1")

    assert (code, out) == (0, "purged 0 finished request(s) older than 1 days\n")
    _, listed, _ = rescue_flow_cli("status", "--json")
    assert [item["request_id"] for item in json.loads(listed)] == [request.request_id]
