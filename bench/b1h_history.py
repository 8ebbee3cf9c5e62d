"""B1h: does a flow cost more when the history is long?

Two sites, each a zero-latency simulated host with its own durable history
(default SQLite): one holding 100 finished flows, the other 10,000. B1's
durable rescue + unrescue cycle runs on both, interleaved; the per-flow
cost (half a cycle) must stay flat: 10,000 / 100 <= 1.2 at the median.

Filling: the small site runs its 100 flows for real. The big one runs a few
real flows, then its history is filled by copying the rows of finished
requests (our row, TaskFlow's logbook, flow detail and step rows) under
new ids, in bulk: the same rows the flows write, 10,000 times, in seconds.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import sqlalchemy as sa

from bench import b1_overhead, harness
from rescue_flow import hyperv
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.persistence.history import History

GOAL = 1.2
SMALL = 100


class Site:
    def __init__(self, folder: str) -> None:
        self.conf = harness.make_conf(folder)
        _sim, uuids = harness.seed_host(self.conf, 1)
        self.uuid = uuids[0]
        self.history = History.from_conf(self.conf)
        self.runner = FlowRunner.from_conf(self.conf, hyperv.get_host(self.conf),
                                           self.history)

    def cycle(self) -> None:
        b1_overhead.runner_cycle(self.runner, self.uuid)

    def flows(self) -> int:
        with self.history.engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM flowdetails"))
                       .scalar_one())

    def fill(self, total: int) -> None:
        """Copy finished requests (with their TaskFlow rows) until ``total`` flows."""
        engine = self.history.engine
        meta = sa.MetaData()
        meta.reflect(bind=engine, only=["rescue_flow_requests", "logbooks", "flowdetails",
                                        "atomdetails"])
        requests_t, books_t = meta.tables["rescue_flow_requests"], meta.tables["logbooks"]
        flows_t, atoms_t = meta.tables["flowdetails"], meta.tables["atomdetails"]
        with engine.connect() as connection:
            templates = []
            for row in connection.execute(requests_t.select().where(
                    requests_t.c.book_uuid.is_not(None))):
                request = dict(row._mapping)
                book = dict(connection.execute(books_t.select().where(
                    books_t.c.uuid == request["book_uuid"])).one()._mapping)
                flows = [dict(r._mapping) for r in connection.execute(
                    flows_t.select().where(flows_t.c.parent_uuid == book["uuid"]))]
                atoms = [dict(r._mapping) for r in connection.execute(
                    atoms_t.select().where(atoms_t.c.parent_uuid.in_(
                        [f["uuid"] for f in flows])))]
                templates.append((request, book, flows, atoms))
        missing = total - self.flows()
        rows: dict[str, list[dict[str, Any]]] = {"r": [], "b": [], "f": [], "a": []}
        old = datetime.datetime(2020, 1, 1)
        for index in range(missing):
            request, book, flows, atoms = templates[index % len(templates)]
            when = old + datetime.timedelta(seconds=index)
            book_uuid = str(uuid.uuid4())
            request_id = harness.new_request_id()
            rows["r"].append(dict(request, request_id=request_id, book_uuid=book_uuid,
                                  instance_uuid=str(uuid.uuid4()), received_at=when,
                                  finished_at=when))
            rows["b"].append(dict(book, uuid=book_uuid, name=request_id))
            renamed = {f["uuid"]: str(uuid.uuid4()) for f in flows}
            rows["f"] += [dict(f, uuid=renamed[f["uuid"]], parent_uuid=book_uuid)
                          for f in flows]
            rows["a"] += [dict(a, uuid=str(uuid.uuid4()),
                               parent_uuid=renamed[a["parent_uuid"]]) for a in atoms]
        with engine.begin() as connection:
            for table, key in ((requests_t, "r"), (books_t, "b"), (flows_t, "f"),
                               (atoms_t, "a")):
                if rows[key]:
                    connection.execute(table.insert(), rows[key])


def run(ctx: harness.Context) -> dict[str, Any]:
    big_total, rounds, warmup = (1000, 6, 1) if ctx.quick else (10_000, 60, 3)
    small, big = Site(ctx.folder("b1h-small")), Site(ctx.folder("b1h-big"))
    with harness.quiet():
        while small.flows() < SMALL - 2 * warmup:
            small.cycle()
        for _ in range(2):
            big.cycle()
        big.fill(big_total - 2 * warmup)
        counts = {"small_at_start": small.flows() + 2 * warmup,
                  "big_at_start": big.flows() + 2 * warmup}
        times = harness.interleave({"small": small.cycle, "big": big.cycle}, rounds,
                                   warmup)
    counts.update(small_at_end=small.flows(), big_at_end=big.flows())
    per_flow = {name: harness.summary([t / 2 for t in seconds])
                for name, seconds in times.items()}
    ratio = per_flow["big"]["median"] / per_flow["small"]["median"]
    return {
        "flows_in_history": counts,
        "per_flow_ms": per_flow,
        "ratio_p95": round(per_flow["big"]["p95"] / per_flow["small"]["p95"], 3),
        "rounds": rounds,
        "ratio": round(ratio, 3),
        "goal": f"per-flow cost with {big_total:,} / with {SMALL} flows in history "
                f"(median) <= {GOAL}",
        "met": harness.verdict(ratio, GOAL),
        "summary": f"{per_flow['small']['median']:.1f} ms/flow at {SMALL} vs "
                   f"{per_flow['big']['median']:.1f} ms/flow at {big_total:,}",
    }
