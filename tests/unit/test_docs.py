"""The documentation says what the code does.

Checked in README.md and docs/*.md:

- every relative link points at a file, and its anchor (if any) at a
  heading of that file (GitHub's heading ids);
- every ``rescue-flow ...`` command line in code (inline code and code
  blocks) names a real subcommand, with options that subcommand takes;
- every ``[group] name`` in code, and every key of an ``ini`` code block,
  is an option rescue-flow reads (its own, oslo.messaging's, oslo.log's) or
  one of the few Nova-only options listed in NOVA_ONLY (an ``ini`` block that
  starts with ``# nova.conf`` is Nova's file and is skipped);
- docs/config-reference.md is what tools/gen-config-reference.py writes now;
- docs/architecture.md's state machine table and diagram and its flow step
  lists match rescue_flow.engine.states and rescue_flow.flows.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from rescue_flow import cli, config
from rescue_flow.engine import states
from rescue_flow.flows import get_cleanup_flow, get_rescue_flow, get_unrescue_flow
from rescue_flow.messaging import bus

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
REFERENCE = ROOT / "docs" / "config-reference.md"
GENERATOR = ROOT / "tools" / "gen-config-reference.py"

# Options of nova.conf that the docs name and rescue-flow does not read.
NOVA_ONLY = {
    ("notifications", "notification_format"),
    ("notifications", "versioned_notifications_topics"),
    ("DEFAULT", "instances_path"),
    ("DEFAULT", "compute_driver"),
    ("DEFAULT", "shutdown_timeout"),
    ("DEFAULT", "rescue_timeout"),
    # Nova's config drive options, which shape the rescue config drive.
    ("DEFAULT", "config_drive_format"),
    ("DEFAULT", "mkisofs_cmd"),
    ("hyperv", "config_drive_cdrom"),
    ("hyperv", "config_drive_inject_password"),
    ("hyperv", "qemu_img_cmd"),
}
# The Nova driver's own options ([rescue_flow] in nova.conf), from its source:
# the driver package is not installed in the worker's environment.
DRIVER_CONF = ROOT / "nova_driver" / "rescue_flow_nova" / "conf.py"
NOVA_ONLY_GROUPS = {group for group, _ in NOVA_ONLY if group != "DEFAULT"}
# Code blocks that show output, not commands.
OUTPUT_LANGUAGES = {"text", "json", "mermaid"}


# Markdown, as far as these checks need it -----------------------------------

class Doc:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path.relative_to(ROOT))
        self.text_parts: list[str] = []  # prose, code blocks cut out
        self.blocks: list[tuple[str, list[str]]] = []  # (language, lines)
        language: str | None = None
        lines: list[str] = []
        prose: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            fence = re.match(r"^\s*```(\S*)", line)
            if fence and language is None:
                language, lines = fence.group(1), []
                self.text_parts.append("\n".join(prose))
                prose = []
            elif fence:
                self.blocks.append((language, lines))
                language = None
            elif language is not None:
                lines.append(line)
            else:
                prose.append(line)
        self.text_parts.append("\n".join(prose))

    @property
    def prose(self) -> str:
        return "\n".join(self.text_parts)

    def code_spans(self) -> list[str]:
        """Inline code, which may run over a line break."""
        return [" ".join(span.split()) for part in self.text_parts
                for span in re.findall(r"`([^`]+)`", part)]

    def code_lines(self) -> Iterator[str]:
        """Every inline code span and every line of every code block that is
        not marked as output (```text, ```json, ```mermaid)."""
        yield from self.code_spans()
        for language, lines in self.blocks:
            if language not in OUTPUT_LANGUAGES:
                yield from lines

    def anchors(self) -> set[str]:
        """GitHub's ids of this file's headings."""
        seen: dict[str, int] = {}
        ids = set()
        for line in self.prose.splitlines():
            match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not match:
                continue
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1)).replace("`", "")
            slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            ids.add(slug if count == 0 else f"{slug}-{count}")
        return ids


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return [Doc(path) for path in DOCS]


def test_the_docs_this_issue_adds_exist() -> None:
    for name in ("architecture", "nova-and-rabbitmq", "deployment", "troubleshooting",
                 "config-reference"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"


# Links ----------------------------------------------------------------------

def test_every_relative_link_points_at_a_file_and_heading(docs: list[Doc]) -> None:
    by_path = {doc.path.resolve(): doc for doc in docs}
    problems = []
    for doc in docs:
        prose = re.sub(r"`[^`]*`", "", doc.prose)  # [x](y) in code is no link
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.path.parent / file_part).resolve() if file_part else doc.path
            if not path.exists():
                problems.append(f"{doc.name}: {target}: no such file")
                continue
            if anchor:
                linked = by_path.get(path.resolve()) or (
                    Doc(path) if path.suffix == ".md" else None)
                if linked is None or anchor not in linked.anchors():
                    problems.append(f"{doc.name}: {target}: no heading #{anchor}")
    assert not problems, "broken links:\n" + "\n".join(problems)


# Commands -------------------------------------------------------------------

def _subparsers(parser: Any) -> dict[str, Any]:
    return dict(parser._subparsers._group_actions[0].choices) if parser._subparsers else {}


_GLOBAL_WITH_VALUE = {"--config-file"}
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$|^<.*>$")


def _starts_command(tokens: list[str], i: int) -> bool:
    """Whether ``tokens[i]`` runs rescue-flow: the program at the start of the
    line, in quotes ("run 'rescue-flow reset ...'"), or named by its path in
    a venv. Not a user name, a queue name or a state folder."""
    token = tokens[i]
    bare = token.lstrip("'\"(")
    if bare.endswith(("/bin/rescue-flow", "\\Scripts\\rescue-flow.exe",
                      "\\Scripts\\rescue-flow")):
        return True
    return bare in ("rescue-flow", "rescue-flow.exe") and (i == 0 or bare != token)


def _invocations(line: str) -> Iterator[list[str]]:
    """The words after each ``rescue-flow`` that starts a command in ``line``."""
    tokens = line.split()
    for i in range(len(tokens)):
        if _starts_command(tokens, i):
            yield tokens[i + 1:]


def _check_command(words: list[str], parser: Any) -> str | None:
    """None if ``rescue-flow <words>`` is a real command line, else why not."""
    rest = [w.split("#")[0] for w in words]
    rest = [w for w in rest if w]
    globals_ = set(parser._option_string_actions)
    while rest and rest[0].startswith("--"):
        option = rest.pop(0).split("=")[0]
        if option not in globals_:
            return f"unknown option {option}"
        if option in _GLOBAL_WITH_VALUE and "=" not in option and rest:
            rest.pop(0)
    if not rest or not re.match(r"^[A-Za-z][\w-]*$", rest[0]):
        return "skip"  # "-o rescue-flow -g": not a command line
    command = rest.pop(0)
    if _PLACEHOLDER.match(command):
        return None
    commands = _subparsers(parser)
    if command not in commands:
        return f"no command {command!r} (there are {', '.join(sorted(commands))})"
    sub = commands[command]
    nested = _subparsers(sub)
    if nested and rest and re.match(r"^[a-z][\w-]*$", rest[0]):
        name = rest.pop(0)
        if name not in nested:
            return f"no '{command} {name}' (there are {', '.join(sorted(nested))})"
        sub = nested[name]
    for word in rest:
        option = word.strip("[](),.;:'\"`|").split("=")[0]
        if option.startswith("--") and option not in sub._option_string_actions \
                and option not in globals_:
            return f"'{command}' takes no option {option}"
    return None


def test_every_rescue_flow_command_in_the_docs_exists(docs: list[Doc]) -> None:
    parser = cli.build_parser()
    problems, checked = [], 0
    for doc in docs:
        for line in doc.code_lines():
            for words in _invocations(line):
                why = _check_command(words, parser)
                if why == "skip":
                    continue
                checked += 1
                if why is not None:
                    problems.append(f"{doc.name}: `{line.strip()}`: {why}")
    assert checked > 20, "found hardly any rescue-flow command: is the parsing broken?"
    assert not problems, "commands the CLI does not have:\n" + "\n".join(problems)


def test_the_command_check_catches_a_wrong_command_or_option() -> None:
    parser = cli.build_parser()
    assert _check_command(["--config-file", "x.conf", "status", "--json"], parser) is None
    assert _check_command(["sim", "fault", "M", "--mode", "permanent"], parser) is None
    assert _check_command(["statuss"], parser) is not None
    assert _check_command(["status", "--check"], parser) is not None
    assert _check_command(["sim", "shows"], parser) is not None


# Options --------------------------------------------------------------------

@pytest.fixture(scope="module")
def conf() -> cfg.ConfigOpts:
    conf = config.make_conf()
    bus.register_opts(conf)
    spec = importlib.util.spec_from_file_location("rescue_flow_nova_conf", DRIVER_CONF)
    assert spec is not None and spec.loader is not None
    driver_conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver_conf)
    driver_conf.register_opts(conf)
    return conf


def _option_exists(conf: cfg.ConfigOpts, group: str, name: str) -> bool:
    if (group, name) in NOVA_ONLY:
        return True
    try:
        getattr(conf if group == "DEFAULT" else conf[group], name)
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        return False
    return True


def _group_exists(conf: cfg.ConfigOpts, group: str) -> bool:
    if group == "DEFAULT" or group in NOVA_ONLY_GROUPS:
        return True
    try:
        conf[group]
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        return False
    return True


def _ini_options(lines: list[str]) -> Iterator[tuple[str, str]]:
    group = "DEFAULT"
    for line in lines:
        line = line.strip().lstrip("#").strip()
        section = re.match(r"^\[(\w+)\]$", line)
        key = re.match(r"^([a-z_][a-z0-9_]*)\s*=", line)
        if section:
            group = section.group(1)
        elif key:
            yield group, key.group(1)


def test_every_option_named_in_the_docs_exists(docs: list[Doc], conf: cfg.ConfigOpts) -> None:
    problems, checked = [], 0
    for doc in docs:
        code = list(doc.code_spans()) + ["\n".join(lines) for language, lines in doc.blocks
                                         if language != "ini"]
        for text in code:
            for group, name in re.findall(r"\[(DEFAULT|[a-z][a-z_]*)\] ([a-z_][a-z0-9_]*)",
                                          text):
                checked += 1
                if not _option_exists(conf, group, name):
                    problems.append(f"{doc.name}: [{group}] {name}")
        for language, lines in doc.blocks:
            if language != "ini" or (lines and lines[0].strip() == "# nova.conf"):
                continue
            for group, name in _ini_options(lines):
                checked += 1
                if not _group_exists(conf, group) or not _option_exists(conf, group, name):
                    problems.append(f"{doc.name} (ini block): [{group}] {name}")
    assert checked > 50, "found hardly any option: is the parsing broken?"
    assert not problems, "options rescue-flow does not have:\n" + "\n".join(problems)


def test_the_option_check_knows_a_missing_option(conf: cfg.ConfigOpts) -> None:
    assert _option_exists(conf, "nova", "pool")
    assert _option_exists(conf, "oslo_messaging_rabbit", "rabbit_quorum_queue")
    assert _option_exists(conf, "DEFAULT", "log_file")
    assert not _option_exists(conf, "nova", "no_such_option")
    assert not _option_exists(conf, "no_such_group", "pool")


# The generated reference ----------------------------------------------------

def test_config_reference_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "config-reference.md"
    proc = subprocess.run([sys.executable, "-W", "ignore", str(GENERATOR), str(fresh)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"tools/gen-config-reference.py failed:\n{proc.stderr}"
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    generated = fresh.read_text(encoding="utf-8")
    if committed != generated:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(keepends=True), generated.splitlines(keepends=True),
            "committed", "generated now", n=1))
        pytest.fail("docs/config-reference.md is stale: run `make docs` and commit it\n\n"
                    + diff[:4000], pytrace=False)


def test_config_reference_lists_every_option() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for group, opts in config.list_opts():
        for opt in opts:
            assert f"### `[{group}] {opt.name}`" in text, f"[{group}] {opt.name} missing"


# Architecture against the code ----------------------------------------------

def _table(text: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row is ``header``."""
    lines = text.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def architecture() -> str:
    return (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_architecture_transition_table_is_the_state_machine(architecture: str) -> None:
    rows = _table(architecture, "| From | Event | To | Does |")
    documented = [(source, event, target) for source, event, target, _ in rows]
    assert documented == [(t.source, t.event, t.target) for t in states.TRANSITIONS]
    does = {states.Act.NOTHING_TO_DO: "nothing to do", states.Act.REFUSE: "refuses",
            states.Act.WAIT: "waits behind the flow in flight", states.Act.MOVE: "—"}
    for (_, _, _, said), transition in zip(rows, states.TRANSITIONS, strict=True):
        if transition.act is states.Act.RUN:
            flow = {"rescue": get_rescue_flow, "unrescue": get_unrescue_flow,
                    "cleanup": get_cleanup_flow}[transition.flow or ""](None)
            assert said.replace("`", "") == f"runs {flow.name}", transition
        else:
            assert said == does[transition.act], transition


def test_architecture_state_diagram_draws_every_state_change(architecture: str) -> None:
    drawn = set(re.findall(r"^\s+(\w+) --> (\w+): (\w+)$", architecture, re.MULTILINE))
    assert drawn == {(t.source, t.target, t.event) for t in states.TRANSITIONS
                     if t.source != t.target}


@pytest.mark.parametrize("factory", [get_rescue_flow, get_unrescue_flow, get_cleanup_flow])
def test_architecture_lists_each_flows_steps_in_order(architecture: str, factory: Any) -> None:
    flow = factory(None)
    line = f"`{flow.name}`: " + " → ".join(f"`{atom.name}`" for atom in flow)
    assert line in architecture, f"docs/architecture.md should say:\n{line}"
