"""rescue-flow's TaskFlow persistence stores the rows TaskFlow's own backend stores.

``rescue_flow.persistence.backend`` writes only the columns a save changed,
saves rows it remembers without reading them first, and inserts a starting
flow's steps without reading the flow back: none of that may change what is
stored. The same requests run on two simulated hosts sharing one database,
one of them through TaskFlow's stock backend, and the logbooks must match
(uuids, timestamps and traceback text aside), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from simsite import GEN1_IMAGE, GEN1_UUID, GEN2_IMAGE, GEN2_UUID, make_site
from taskflow.persistence.backends import impl_sqlalchemy

from rescue_flow.persistence.backend import RememberingConnection
from rescue_flow.requests import Request


def _site(folder: str, db_url: str) -> Any:
    site = make_site(folder, db_url)
    site.sim.add_vm("instance-00000001", GEN1_UUID, GEN1_IMAGE, nics=2, config_drive=True)
    site.sim.add_vm("instance-00000002", GEN2_UUID, GEN2_IMAGE, nics=1)
    return site


def _run(site: Any, prefix: str) -> list[str]:
    """Successes, a reverted rescue, leftovers and the clean-up they need."""
    outcomes = []

    def handle(action: str, instance_uuid: str, image: str | None = None) -> None:
        request = Request(action, instance_uuid, f"{prefix}{len(outcomes)}", image_id=image)
        outcomes.append(site.runner.handle(request).outcome.value)

    handle("rescue", GEN1_UUID, GEN1_IMAGE)
    handle("unrescue", GEN1_UUID)
    site.sim.set_fault("attach_drive", "permanent", after=1, times=1)
    handle("rescue", GEN2_UUID, GEN2_IMAGE)
    site.sim.clear_faults()
    handle("rescue", GEN2_UUID, GEN2_IMAGE)
    site.sim.set_fault("remove", "permanent", times=site.conf.retry.attempts)
    handle("unrescue", GEN2_UUID)
    handle("rescue", GEN2_UUID, GEN2_IMAGE)  # cleans up first, in the same logbook
    return outcomes


def _without_tracebacks(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_tracebacks(item) for key, item in value.items()
                if key != "traceback_str"}
    if isinstance(value, list):
        return [_without_tracebacks(item) for item in value]
    return value


_VM_ID = re.compile(r"(sim:[^:\"]+:)[0-9a-f-]{36}")


def _stored(site: Any, prefix: str, folder: str) -> list[str]:
    """Each logbook of ``prefix``'s requests as TaskFlow reads it back."""
    backend = impl_sqlalchemy.SQLAlchemyBackend({}, engine=site.runner.history.engine)
    books = [book for book in backend.get_connection().get_logbooks()
             if book.name.startswith(prefix)]
    lines = []
    for book in sorted(books, key=lambda book: book.name):
        lines.append(f"book {book.name} {book.meta}")
        for flow in sorted(book, key=lambda flow: flow.meta["sequence"]):
            lines.append(f"flow {flow.name} {flow.state} {flow.meta}")
            for atom in sorted(flow, key=lambda atom: atom.name):
                row = {key: value for key, value in atom.to_dict().items() if key != "uuid"}
                lines.append(f"{type(atom).__name__} "
                             f"{json.dumps(_without_tracebacks(row), sort_keys=True)}")
    # A controller's path names its VM's id, new in each run.
    return [_VM_ID.sub(r"\1<vm-id>", line.replace(folder, "<folder>").replace(prefix, "<request>"))
            for line in lines]


@pytest.mark.parametrize("remembered", [1024, 8], ids=["all-remembered", "few-remembered"])
def test_the_rows_stored_are_those_of_taskflows_own_backend(tmp_path, db_url, remembered):
    stock_folder, ours_folder = str(tmp_path / "stock"), str(tmp_path / "ours")
    stock, ours = _site(stock_folder, db_url), _site(ours_folder, db_url)
    history = stock.runner.history
    history.backend = impl_sqlalchemy.SQLAlchemyBackend({}, engine=history.engine)
    if remembered != 1024:  # steps forgotten while their flow runs: TaskFlow's reads
        backend = ours.runner.history.backend
        backend._connection = RememberingConnection(backend, backend._upgrade_lock,
                                                    size=remembered)
    try:
        assert _run(stock, "stock-") == _run(ours, "ours-") == [
            "success", "success", "failed", "success", "success", "success"]
        assert _stored(ours, "ours-", ours_folder) == _stored(stock, "stock-", stock_folder)
    finally:
        stock.runner.history.close()
        ours.runner.history.close()


def test_a_save_of_a_steps_progress_alone_waits_for_its_next_write(tmp_path):
    """TaskFlow saves progress 0.0 and 1.0 on their own around each step;
    they ride along with the step's next save or the flow's (the rows stay
    TaskFlow's: the test above)."""
    site = _site(str(tmp_path), f"sqlite:///{tmp_path}/history.sqlite")
    updates: list[set[str]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE atomdetails"):
            columns = statement.split(" SET ")[1].split(" WHERE ")[0]
            updates.append({column.split("=")[0].strip() for column in columns.split(",")}
                           - {"updated_at"})  # set by SQLAlchemy on every update

    sa.event.listen(site.runner.history.engine, "before_cursor_execute", record)
    try:
        request = Request("rescue", GEN1_UUID, "progress-1", image_id=GEN1_IMAGE)
        assert site.runner.handle(request).outcome.value == "success"
    finally:
        site.runner.history.close()
    assert updates, "no step was saved through rescue-flow's connection"
    # Alone, the marks would be 24 updates of meta only; the starting marks
    # ride with the steps' results, the ending ones with the flow's last save.
    assert updates.count({"meta"}) == 12
    stored = _stored(site, "progress-", str(tmp_path))
    steps = [json.loads(line.split(" ", 1)[1]) for line in stored if line.startswith("Task")]
    ran = [step for step in steps if not step["name"].startswith("_TaskFlow_")]  # injector
    assert len(ran) == 12  # the rescue flow's steps
    assert [(step["name"], step["meta"]) for step in ran] == [
        (step["name"], {"progress": 1.0}) for step in ran]
