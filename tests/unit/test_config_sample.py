"""etc/rescue-flow.conf.sample is what ``make genconfig`` would write now.

The sample's header names the library versions it was generated with. With
those versions installed, the whole file must match byte for byte. With other
versions (a newer oslo.log on a fresh machine, say) the libraries' own text
may differ for reasons outside this project, so only rescue-flow's options
are compared and the full comparison is skipped with a reason.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "etc" / "rescue-flow.conf.sample"
GENCONFIG = ROOT / "tools" / "genconfig.sh"
FIX = "run `make genconfig` and commit etc/rescue-flow.conf.sample"


def _generate(out: Path) -> str:
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(GENCONFIG), str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"tools/genconfig.sh failed:\n{proc.stderr}"
    return out.read_text()


def _libraries(text: str) -> str:
    match = re.search(r"^# Libraries: (.*)$", text, re.MULTILINE)
    return match.group(1) if match else "(unknown)"


def _options_by_namespace(text: str, namespace: str) -> dict[tuple[str, str], str]:
    """``{(section, option): sample value}`` for the options that the
    generator lists under ``# From <namespace>``."""
    options: dict[tuple[str, str], str] = {}
    section, current = "", ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("[") and line.endswith("]"):
            section, current = line[1:-1], ""
        elif (line.startswith("# From ") and 0 < i < len(lines) - 1
              and lines[i - 1] == "#" and lines[i + 1] == "#"):
            current = line[len("# From "):]
        elif current == namespace:
            match = re.match(r"^#(\w+) = (.*)$", line)
            if match:
                options[(section, match.group(1))] = match.group(2)
    return options


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _generate(tmp_path_factory.mktemp("genconfig") / "rescue-flow.conf.sample")


@pytest.fixture(scope="module")
def committed() -> str:
    assert SAMPLE.exists(), f"{SAMPLE.relative_to(ROOT)} is missing: {FIX}"
    return SAMPLE.read_text()


def test_rescue_flow_options_are_in_sample(fresh: str, committed: str) -> None:
    want = _options_by_namespace(fresh, "rescue_flow")
    have = _options_by_namespace(committed, "rescue_flow")
    assert want, "the generator found no rescue_flow option: is the package installed?"
    missing = sorted(set(want) - set(have))
    stale = sorted(set(have) - set(want))
    changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    assert not (missing or stale or changed), (
        f"sample is stale for rescue-flow's options: missing {missing}, "
        f"no longer defined {stale}, default changed {changed}; {FIX}")


def test_sample_is_current(fresh: str, committed: str) -> None:
    if _libraries(fresh) != _libraries(committed):
        pytest.skip(f"sample was generated with {_libraries(committed)}, installed are "
                    f"{_libraries(fresh)}; only rescue-flow's options were compared. "
                    f"To refresh the libraries' part: {FIX}")
    if fresh != committed:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
            "committed", "generated now", n=2))
        if len(diff) > 4000:
            diff = diff[:4000] + "\n[... diff cut ...]\n"
        pytest.fail(f"etc/rescue-flow.conf.sample is stale: {FIX}\n\n{diff}",
                    pytrace=False)


_OTHER_MACHINE = """
import runpy, socket, sys
socket.gethostname = lambda: "other-host-7f3a"
socket.getfqdn = lambda name="": "other-host-7f3a.example.org"
sys.argv = ["/opt/other/bin/other-program", *sys.argv[1:]]
runpy.run_module("oslo_config.generator", run_name="__main__", alter_sys=True)
"""


def test_sample_does_not_depend_on_this_machine(fresh: str, tmp_path: Path) -> None:
    # Generate again as if on another machine: other host name, program name,
    # working folder, home and user. Only the header may differ (it is added
    # by tools/genconfig.sh, not by the generator).
    out = tmp_path / "other.conf.sample"
    env = dict(os.environ, HOME=str(tmp_path), USER="someone-else",
               LOGNAME="someone-else", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", _OTHER_MACHINE, "--config-file",
         str(ROOT / "etc" / "oslo-config-generator" / "rescue-flow.conf"),
         "--output-file", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    body = fresh[fresh.index("\n[DEFAULT]\n") + 1:]
    assert out.read_text() == body, (
        "the sample changes with the machine it is generated on: give the "
        "option whose default differs a sample_default (diff the two files)")
