"""Smoke test of the benchmarks: ``python -m bench --quick`` runs and writes
every benchmark's figures and verdict in the agreed shape.

Shape only: no timing is asserted here (CI machines are noisy; the verdicts
belong to ``make bench`` and docs/benchmarks.md). B2, B3 and B5 need
RabbitMQ, so they run in their own test, skipped on a laptop without a
broker like the other broker tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_quick(tmp_path: Path, only: str, env: dict[str, str] | None = None) -> dict:
    out = tmp_path / "quick.json"
    process = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", only, "--json", str(out)],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=300, check=False)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return json.loads(out.read_text())


def check_shape(results: dict, ids: list[str]) -> None:
    assert set(results) == {*ids, "run"}
    for bench_id in ids:
        result = results[bench_id]
        assert "skipped" not in result and "error" not in result, result
        assert isinstance(result["ratio"], int | float), result
        assert isinstance(result["goal"], str) and result["goal"], result
        assert result["met"] in (True, False), result
        figures = {k: v for k, v in result.items()
                   if k not in ("ratio", "goal", "met", "summary", "seconds")}
        assert figures, f"{bench_id} produced no figures"
    run = results["run"]
    assert run["quick"] is True
    assert run["machine"]["nproc"] >= 1
    assert run["versions"]["taskflow"] and run["versions"]["SQLAlchemy"]


def test_quick_run_of_the_benchmarks_without_a_broker_writes_figures_and_verdicts(
        tmp_path: Path) -> None:
    ids = ["B1", "B1h", "B4"]
    results = run_quick(tmp_path, ",".join(ids))
    check_shape(results, ids)
    assert results["B1"]["call_log"]["identical"] is True


def test_quick_run_of_the_broker_benchmarks_writes_figures_and_verdicts(
        tmp_path: Path, rabbit_url: str) -> None:
    ids = ["B2", "B3", "B5"]
    results = run_quick(tmp_path, ",".join(ids), {"RESCUE_FLOW_RABBIT_URL": rabbit_url})
    check_shape(results, ids)


def test_benchmarks_without_a_broker_are_recorded_as_skipped(tmp_path: Path) -> None:
    results = run_quick(tmp_path, "B5",
                        {"RESCUE_FLOW_RABBIT_URL": "rabbit://guest:guest@127.0.0.1:1/"})
    assert results["B5"]["met"] is None and results["B5"]["skipped"]

