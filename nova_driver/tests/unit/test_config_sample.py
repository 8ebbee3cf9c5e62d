"""nova_driver/etc/rescue-flow-nova.conf.sample is what oslo-config-generator
writes now from the installed package's ``oslo.config.opts`` entry point."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
GENERATOR_CONF = ROOT / "nova_driver" / "etc" / "oslo-config-generator" / "rescue-flow-nova.conf"
SAMPLE = ROOT / "nova_driver" / "etc" / "rescue-flow-nova.conf.sample"


def test_the_committed_sample_is_what_the_generator_writes(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sample.conf"
    proc = subprocess.run(
        [sys.executable, "-m", "oslo_config.generator", "--config-file",
         str(GENERATOR_CONF), "--output-file", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == SAMPLE.read_text(), (
        "stale: run `make genconfig-nova` and commit nova_driver/etc/rescue-flow-nova.conf.sample")
