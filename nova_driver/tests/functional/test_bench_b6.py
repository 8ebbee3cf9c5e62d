"""Bench B6's quick run: rescue-flow against compute-hyperv 16.0.0, call by call.

Here rather than in the worker's suite: B6 runs compute-hyperv in this
environment (.venv-nova), which `make test` builds while the worker's suite
runs; this suite starts only once it is complete. The benchmark itself runs
with the worker's Python (``RESCUE_FLOW_BIN``), as `make bench` runs it.
"""

import json
import subprocess

from rfworker import REPO, worker_bin


def test_quick_run_of_b6_compares_with_compute_hyperv_call_by_call(tmp_path):
    out = tmp_path / "quick.json"
    process = subprocess.run(
        [str(worker_bin() / "python"), "-m", "bench", "--quick", "--only", "B6",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    result = json.loads(out.read_text())["B6"]
    assert "skipped" not in result and "error" not in result, result
    assert isinstance(result["ratio"], (int, float)) and result["met"] in (True, False)
    for generation in ("gen1", "gen2"):
        figures = result[generation]
        for side in ("rescue_flow", "compute_hyperv"):
            for action in ("rescue", "unrescue"):
                count = figures["counts"][side][action]
                assert count["reads"] + count["changes"] == count["calls"] > 0, count
        # rescue-flow's own guarantees hold in the comparison too.
        assert figures["clean_cycle_restores_host"]["rescue_flow"] is True
        for action in ("rescue", "unrescue"):
            matrix = figures["matrix"]["rescue_flow"][action]
            assert matrix["right_share"] == 1.0, matrix["wrong"]
