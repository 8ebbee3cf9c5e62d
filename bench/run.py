"""Run the benchmarks: ``python -m bench [--quick] [--only B1,B2] [--json PATH]``.

Writes the figures as JSON (default ``bench/results/latest.json``): one
object per benchmark id with at least ``ratio``, ``goal`` and ``met``
(true, false, or null when it was skipped), plus ``run`` (machine,
versions, command). A full run also rewrites the generated part of
``docs/benchmarks.md`` (between the ``bench:begin`` and ``bench:end``
markers); ``--quick`` (the CI smoke test) writes only the JSON it is told.
With ``--only``, the other benchmarks' figures already in the JSON file are
kept (the rerun is listed in ``run``).

B2, B3 and B5 need RabbitMQ: ``$RESCUE_FLOW_RABBIT_URL``, else
``rabbit://guest:guest@127.0.0.1:5672/``. Without a broker they are
recorded as skipped, unless ``--require-broker`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from typing import Any

from bench import harness, report

BENCHMARKS = {
    "B1": "bench.b1_overhead",
    "B1h": "bench.b1h_history",
    "B2": "bench.b2_end_to_end",
    "B3": "bench.b3_parallel",
    "B4": "bench.b4_memory",
    "B5": "bench.b5_intake",
    "B6": "bench.b6_compute_hyperv",
}
NEEDS_BROKER = {"B2", "B3", "B5"}
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results", "latest.json")
DEFAULT_DOC = os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in under a minute: few rounds, small counts")
    parser.add_argument("--only", default="",
                        help="comma-separated benchmark ids (default: all)")
    parser.add_argument("--json", default=None,
                        help=f"where to write the figures (default: {DEFAULT_JSON}; "
                        "with --quick: nowhere unless given)")
    parser.add_argument("--doc", default=None,
                        help=f"markdown file whose generated part is rewritten "
                        f"(default: {DEFAULT_DOC} for a full run, none with --quick)")
    parser.add_argument("--require-broker", action="store_true",
                        help="fail instead of skipping B2, B3 and B5 without RabbitMQ")
    return parser.parse_args(argv)


def merged(json_path: str | None, results: dict[str, Any],
           run: dict[str, Any]) -> dict[str, Any]:
    """``--only``: the new results over the file's others, when it has the same kind of run."""
    try:
        with open(json_path or "", encoding="utf-8") as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return {**results, "run": run}
    if earlier.get("run", {}).get("quick") != run["quick"]:
        return {**results, "run": run}
    combined = {**{k: v for k, v in earlier.items() if k != "run"}, **results}
    ordered = {k: combined[k] for k in BENCHMARKS if k in combined}
    rerun = {"date": run["date"], "command": run["command"], "ids": list(results)}
    previous = earlier["run"]
    previous["reruns"] = [*previous.get("reruns", []), rerun]
    return {**ordered, "run": previous}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHMARKS)
    unknown = set(wanted) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark ids: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    json_path = args.json or (None if args.quick else DEFAULT_JSON)
    doc_path = args.doc or (None if args.quick else DEFAULT_DOC)
    url, why = harness.find_rabbit()
    if url is None and args.require_broker and NEEDS_BROKER & set(wanted):
        print(f"--require-broker: {why}", file=sys.stderr)
        return 1
    started = time.monotonic()
    results: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="rescue-flow-bench-") as workdir:
        ctx = harness.Context(quick=args.quick, workdir=workdir, rabbit_url=url,
                              rabbit_error=why)
        for bench_id in wanted:
            module = importlib.import_module(BENCHMARKS[bench_id])
            if bench_id in NEEDS_BROKER and url is None:
                harness.log(f"{bench_id}: skipped ({why})")
                results[bench_id] = harness.skipped(why, module.GOAL_TEXT
                                                    if hasattr(module, "GOAL_TEXT")
                                                    else str(module.GOAL))
                continue
            harness.log(f"{bench_id}: running ({'quick' if args.quick else 'full'})")
            began = time.monotonic()
            try:
                result = module.run(ctx)
            except Exception as exc:
                traceback.print_exc()
                failed = True
                result = {"error": f"{type(exc).__name__}: {exc}", "ratio": None,
                          "goal": str(getattr(module, "GOAL", "")), "met": None}
            result["seconds"] = round(time.monotonic() - began, 1)
            results[bench_id] = result
            harness.log(f"{bench_id}: ratio {result.get('ratio')} goal "
                        f"{result.get('goal')} met {result.get('met')} "
                        f"({result['seconds']} s)")
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": harness.machine(),
        "versions": harness.versions(url),
        "broker": url if url else f"none ({why})",
    }
    results = merged(json_path, results, run) if args.only else {**results, "run": run}
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(text)
        harness.log(f"figures written to {json_path}")
    if doc_path:
        report.update_doc(doc_path, results)
        harness.log(f"table written to {doc_path}")
    print(report.table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
