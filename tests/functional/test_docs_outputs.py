"""Where docs/troubleshooting.md shows a command's output, the command prints it.

Each test finds the ```text block that follows a phrase of the doc, runs the
command on a simulated host, and compares, with the doc's example instance
and host standing for this test's, and ``<...>`` for any text.
(The error lines' table is checked by test_cli_environment.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from simsite import GEN1_IMAGE, GEN1_UUID

from rescue_flow import cli

pytestmark = pytest.mark.usefixtures("restore_logging")

DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
DOC_UUID, DOC_HOST = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01", "hv-docs-1"


def documented_output(after: str) -> str:
    """The first text block after ``after`` in the doc, as a regex for this
    test's instance and host."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```text\n(.*?)\n\s*```", text[text.index(after):], re.DOTALL)
    assert block, f"no output block after {after!r} in {DOC.name}"
    lines = [line.strip() for line in block.group(1).splitlines()]
    shown = "\n".join(lines).replace(DOC_UUID, GEN1_UUID).replace(DOC_HOST, "hv-test")
    return "".join(".+" if part.startswith("<") else re.escape(part)
                   for part in re.split(r"(<[^>]+>)", shown))


def run(config_file: str, capsys, *args: str) -> str:
    capsys.readouterr()
    cli.main(["--config-file", config_file, *args])
    return "\n".join(line.strip() for line in capsys.readouterr().out.splitlines())


def quarantine(seeded, config_file: str, capsys) -> None:
    seeded.sim.set_fault("soft_shutdown_vm", "permanent")
    seeded.sim.set_fault("set_vm_state", "permanent")
    run(config_file, capsys, "run", "rescue", GEN1_UUID, "--image", GEN1_IMAGE)
    seeded.sim.clear_faults()


def test_resume_with_nothing_to_resume_prints_what_the_doc_shows(config_file, capsys):
    out = run(config_file, capsys, "resume")
    assert re.fullmatch(documented_output("does the same resume in the foreground"), out)


def test_a_request_for_a_quarantined_instance_is_answered_as_the_doc_shows(
        seeded, config_file, capsys):
    quarantine(seeded, config_file, capsys)

    out = run(config_file, capsys, "run", "unrescue", GEN1_UUID)

    expected = documented_output("later requests are answered with")
    assert re.search(f"^unrescue {GEN1_UUID}: quarantined: {expected}$", out, re.MULTILINE)


def test_reset_prints_what_the_doc_shows(seeded, config_file, capsys):
    quarantine(seeded, config_file, capsys)

    assert re.fullmatch(documented_output("takes the instance off the list"),
                        run(config_file, capsys, "reset", GEN1_UUID))
    assert run(config_file, capsys, "reset", GEN1_UUID) == f"{GEN1_UUID} was not quarantined"
