"""The request history on a real database: SQLite, then PostgreSQL.

Every test that takes ``db_url`` runs twice, each time on an empty database
of its own (see tests/conftest.py). The checks read the tables directly where
the history's own answers could hide a mistake: TaskFlow's tables after a
purge, the connections left after ``close``.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import importlib.metadata
import pathlib

import pytest
import sqlalchemy as sa
from packaging.requirements import Requirement
from packaging.version import Version
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, make_site, new_request_id

from rescue_flow.flows import get_rescue_flow
from rescue_flow.outcome import Outcome, Result
from rescue_flow.persistence import schema
from rescue_flow.persistence.backend import create_engine, is_sqlite
from rescue_flow.persistence.history import History, utcnow
from rescue_flow.requests import Request

TASKFLOW_TABLES = ("logbooks", "flowdetails", "atomdetails")
SQLITE_NORMAL, SQLITE_FULL = 1, 2  # PRAGMA synchronous values
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def history(db_url):
    history = History(create_engine(db_url), "hv-a")
    history.upgrade()
    yield history
    history.close()


@pytest.fixture
def durable_site(tmp_path, db_url):
    site = make_site(str(tmp_path), db_url)
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    site.sim.clear_calls()
    yield site
    site.runner.history.close()


def rescue_request(instance_uuid=GEN1_UUID, host=None):
    image = GEN1_IMAGE if instance_uuid == GEN1_UUID else GEN2_IMAGE
    return Request("rescue", instance_uuid, new_request_id(), image_id=image, host=host)


def count(engine, table, **where):
    query = f"SELECT count(*) FROM {table}"
    if where:
        query += " WHERE " + " AND ".join(f"{column} = :{column}" for column in where)
    with engine.connect() as connection:
        return connection.execute(sa.text(query), where).scalar()


def make_old(engine, request_id, days, column="finished_at"):
    with engine.begin() as connection:
        connection.execute(
            schema.requests_table.update()
            .where(schema.requests_table.c.request_id == request_id)
            .values({column: utcnow() - datetime.timedelta(days=days)}))


# Schema --------------------------------------------------------------------


def test_the_first_start_creates_taskflows_tables_and_ours(db_url, history):
    tables = set(sa.inspect(history.engine).get_table_names())

    assert {*TASKFLOW_TABLES, "rescue_flow_requests"} <= tables
    # TaskFlow migrates with alembic, except on SQLite where it creates its
    # tables directly (so a SQLite file is never migrated by TaskFlow).
    assert ("alembic_version" in tables) is not is_sqlite(db_url)


def test_a_second_start_upgrades_without_error_and_keeps_every_row(db_url, history):
    history.accept(rescue_request())
    schema_before = _schema(history.engine)

    again = History(create_engine(db_url), "hv-a")
    again.upgrade()
    again.upgrade()

    assert _schema(again.engine) == schema_before
    assert len(again.recent()) == 1
    again.close()


def _schema(engine):
    """Every table with its columns, and the alembic revision where there is one."""
    inspector = sa.inspect(engine)
    tables = {table: sorted(column["name"] for column in inspector.get_columns(table))
              for table in inspector.get_table_names()}
    if "alembic_version" in tables:
        with engine.connect() as connection:
            tables["alembic_version"] = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
    return tables


# Accepting a request ---------------------------------------------------------


def test_accept_records_the_request_before_anything_runs(history):
    request = rescue_request()

    new, record = history.accept(request)

    assert new
    assert record.request == request
    assert (record.state, record.book_uuid, record.outcome, record.finished_at) == (
        schema.ACCEPTED, None, None, None)
    assert history.unfinished() == [record]


def test_a_second_accept_of_the_same_request_id_returns_the_earlier_record(history):
    request = rescue_request()
    _, first = history.accept(request)

    new, again = history.accept(request)

    assert not new
    assert again == first
    assert count(history.engine, "rescue_flow_requests") == 1


def test_concurrent_accepts_of_one_request_id_let_exactly_one_through(db_url, history):
    request = rescue_request()
    others = [History(create_engine(db_url), "hv-a") for _ in range(4)]

    with concurrent.futures.ThreadPoolExecutor(len(others)) as pool:
        answers = list(pool.map(lambda h: h.accept(request), others * 2))

    assert [new for new, _ in answers].count(True) == 1
    assert all(record == answers[0][1] for _, record in answers)
    assert count(history.engine, "rescue_flow_requests") == 1
    for other in others:
        other.close()


def test_on_sqlite_accept_commits_with_a_full_fsync_and_step_updates_do_not(tmp_path):
    # accept is the write a power cut must not undo; steps can be re-run.
    site = make_site(str(tmp_path))  # the default: SQLite in state_path
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=1)
    engine = site.runner.history.engine
    seen: dict[str, set[int]] = {"accept": set(), "step": set()}

    def watch(connection, cursor, statement, *_args):
        kind = ("accept" if statement.startswith("INSERT INTO rescue_flow_requests") else
                "step" if statement.startswith("UPDATE atomdetails") else None)
        if kind:
            probe = connection.connection.cursor()
            seen[kind].add(probe.execute("PRAGMA synchronous").fetchone()[0])
            probe.close()

    sa.event.listen(engine, "before_cursor_execute", watch)
    try:
        result = site.runner.handle(rescue_request())
    finally:
        sa.event.remove(engine, "before_cursor_execute", watch)
        site.runner.history.close()

    assert result.outcome is Outcome.SUCCESS
    assert seen == {"accept": {SQLITE_FULL}, "step": {SQLITE_NORMAL}}


def test_the_same_message_handled_twice_runs_one_flow_and_never_reaches_the_host(durable_site):
    request = rescue_request()
    first = durable_site.runner.handle(request)
    calls_of_first = len(durable_site.sim.calls())
    durable_site.sim.clear_calls()

    second = durable_site.runner.handle(request)

    assert first.outcome is Outcome.SUCCESS and calls_of_first > 0
    assert second.outcome is Outcome.DUPLICATE
    assert second.reason == "already handled: success"
    assert durable_site.sim.calls() == []
    engine = durable_site.runner.history.engine
    assert count(engine, "rescue_flow_requests") == 1
    assert count(engine, "flowdetails") == 1


def test_a_redelivery_while_the_first_is_unfinished_is_not_run_again(durable_site):
    request = rescue_request()
    durable_site.runner.history.accept(request)  # as if the first delivery were still running

    result = durable_site.runner.handle(request)

    assert result.outcome is Outcome.DUPLICATE
    assert result.reason == "already accepted; it runs (or resumes) once"
    assert durable_site.sim.calls() == []


# What is left to do ----------------------------------------------------------


def test_unfinished_lists_only_this_hosts_unfinished_requests_oldest_first(db_url, history):
    other_host = History(create_engine(db_url), "hv-b")
    newest, finished, oldest = rescue_request(), rescue_request(), rescue_request()
    elsewhere = rescue_request(GEN2_UUID, host="hv-b")
    for request in (newest, finished, elsewhere, oldest):  # not in age order
        history.accept(request)
    make_old(history.engine, oldest.request_id, days=2, column="received_at")
    make_old(history.engine, finished.request_id, days=3, column="received_at")
    history.finish(Result(finished.request_id, "rescue", GEN1_UUID, "hv-a", Outcome.SUCCESS))

    mine = [record.request.request_id for record in history.unfinished()]
    theirs = [record.request.request_id for record in other_host.unfinished()]

    assert mine == [oldest.request_id, newest.request_id]
    assert theirs == [elsewhere.request_id]
    other_host.close()


# Steps -----------------------------------------------------------------------


def test_steps_list_every_rescue_step_in_flow_order_with_its_state(durable_site):
    history = durable_site.runner.history
    result = durable_site.runner.handle(rescue_request())
    record = history.recent()[0]

    steps = history.steps(record)

    flow_order = [atom.name for atom in get_rescue_flow(durable_site.runner.host)]
    assert result.outcome is Outcome.SUCCESS
    assert steps == [("rescue", step, "SUCCESS") for step in flow_order]
    assert set(Result.from_dict(record.result).step_durations) == set(flow_order)


def test_steps_of_a_failed_rescue_show_what_was_reverted_and_what_never_ran(durable_site):
    durable_site.sim.set_fault("attach_drive", "permanent")
    history = durable_site.runner.history
    result = durable_site.runner.handle(rescue_request())

    steps = history.steps(history.recent()[0])

    flow_order = [atom.name for atom in get_rescue_flow(durable_site.runner.host)]
    failed = flow_order.index("AttachRescueDisk")
    assert result.outcome is Outcome.FAILED and result.failed_step == "AttachRescueDisk"
    assert steps == [("rescue", step, "REVERTED") for step in flow_order[:failed + 1]] + \
        [("rescue", step, "PENDING") for step in flow_order[failed + 1:]]


# Purge -----------------------------------------------------------------------


def test_purge_removes_old_finished_requests_with_their_taskflow_logbooks(durable_site):
    history = durable_site.runner.history
    engine = history.engine
    old = durable_site.runner.handle(rescue_request(GEN1_UUID))
    recent = durable_site.runner.handle(rescue_request(GEN2_UUID))
    old_book = history.get(old.request_id).book_uuid
    old_flows = [row.uuid for row in _flowdetails(engine, old_book)]
    old_atoms = sum(count(engine, "atomdetails", parent_uuid=flow) for flow in old_flows)
    before = {table: count(engine, table) for table in TASKFLOW_TABLES}
    make_old(engine, old.request_id, days=31)

    purged = history.purge(datetime.timedelta(days=30))

    assert (old.outcome, recent.outcome, purged) == (Outcome.SUCCESS, Outcome.SUCCESS, 1)
    assert history.get(old.request_id) is None
    assert history.get(recent.request_id) is not None
    assert count(engine, "logbooks", uuid=old_book) == 0
    assert count(engine, "flowdetails", parent_uuid=old_book) == 0
    assert old_flows and old_atoms > 0
    assert all(count(engine, "atomdetails", parent_uuid=flow) == 0 for flow in old_flows)
    # The other request's logbook is whole: only the old one went.
    assert count(engine, "logbooks") == before["logbooks"] - 1
    assert count(engine, "flowdetails") == before["flowdetails"] - len(old_flows)
    assert count(engine, "atomdetails") == before["atomdetails"] - old_atoms


def test_purge_leaves_unfinished_requests_however_old(durable_site):
    history = durable_site.runner.history
    waiting, interrupted = rescue_request(GEN1_UUID), rescue_request(GEN2_UUID)
    history.accept(waiting)
    history.accept(interrupted)
    history.new_flow_detail(interrupted.request_id, "rescue")  # as if cut short
    for request in (waiting, interrupted):
        make_old(history.engine, request.request_id, days=400, column="received_at")
        make_old(history.engine, request.request_id, days=400)  # even with a stray date

    purged = history.purge(datetime.timedelta(days=1))

    assert purged == 0
    assert [r.request.request_id for r in history.unfinished()] == [
        waiting.request_id, interrupted.request_id]
    book = history.get(interrupted.request_id).book_uuid
    assert book and count(history.engine, "logbooks", uuid=book) == 1
    assert count(history.engine, "flowdetails", parent_uuid=book) == 1


def test_purge_with_nothing_old_enough_keeps_everything(durable_site):
    history = durable_site.runner.history
    durable_site.runner.handle(rescue_request())
    before = {table: count(history.engine, table) for table in TASKFLOW_TABLES}

    assert history.purge(datetime.timedelta(days=1)) == 0
    assert {table: count(history.engine, table) for table in TASKFLOW_TABLES} == before


def _flowdetails(engine, book_uuid):
    with engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT uuid FROM flowdetails WHERE parent_uuid = :book"),
            {"book": book_uuid}).all()


# Connections and versions ----------------------------------------------------


def test_close_gives_back_every_database_connection(durable_site, db_url):
    history = durable_site.runner.history
    durable_site.runner.handle(rescue_request())
    assert history.engine.pool.checkedin() > 0

    history.close()

    assert history.engine.pool.checkedin() == 0
    if not is_sqlite(db_url):
        observer = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
        with observer.connect() as connection:
            others = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar()
        observer.dispose()
        assert others == 0


def test_the_installed_sqlalchemy_is_below_2_1_as_requirements_pin_it():
    # SQLAlchemy 2.1 leaks megabytes per flow through TaskFlow's SQL backend.
    installed = Version(importlib.metadata.version("SQLAlchemy"))
    pins = [Requirement(line) for line in
            (REPO / "requirements.txt").read_text().splitlines()
            if line.lower().startswith("sqlalchemy")]

    assert installed < Version("2.1")
    assert len(pins) == 1 and not pins[0].specifier.contains("2.1.0")
    assert pins[0].specifier.contains(str(installed))
