"""A small run of tools/soak.py: mixed requests while storage stalls, the disk
fills and the worker is killed at random; every request ends once, no false
quarantine, every instance as its last request asked (docs/reliability.md
has the full run's figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_soak_ends_every_request_once_without_false_quarantine(tmp_path) -> None:
    out = tmp_path / "soak.json"
    workdir = tmp_path / "soak"
    workdir.mkdir()
    process = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "tools" / "soak.py"), "--requests", "30",
         "--instances", "4", "--mean-gap", "0.4", "--seed", "7", "--workdir", str(workdir),
         "--json", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["problems"] == [] and result["false_quarantines"] == 0
    assert sum(result["outcomes"].values()) == 30
    assert sum(result["trouble"].values()) > 0
