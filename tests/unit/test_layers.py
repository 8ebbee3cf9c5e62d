"""The package's layers, and a test that no module imports from a layer above
its own: a request goes down, from the command line or the bus to Hyper-V,
and nothing below calls back up (CONTRIBUTING.md says where new code goes).

A small AST reader rather than import-linter: the rules fit in one table,
and the test's own test below shows that a climbing import is caught.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rescue_flow"

# Top to bottom. A module belongs to the layer of its longest listed prefix;
# it may import from its own layer and from any layer below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("commands", ("rescue_flow.cli", "rescue_flow.commands", "rescue_flow.simhost.cli")),
    ("service", ("rescue_flow.service",)),
    ("listeners", ("rescue_flow.listener",)),
    ("intake", ("rescue_flow.messaging.nova_intake", "rescue_flow.messaging.client")),
    ("messages", ("rescue_flow.messaging.nova", "rescue_flow.messaging.protocol",
                  "rescue_flow.messaging.ordered_listener")),
    ("bus", ("rescue_flow.messaging",)),
    ("engine", ("rescue_flow.engine",)),
    ("flows", ("rescue_flow.flows",)),
    ("tasks", ("rescue_flow.tasks", "rescue_flow.layout")),
    ("history", ("rescue_flow.persistence",)),
    ("hyperv", ("rescue_flow.hyperv",)),
    ("simulated host", ("rescue_flow.simhost",)),
    ("vocabulary", ("rescue_flow.requests", "rescue_flow.outcome", "rescue_flow.records",
                    "rescue_flow.exceptions", "rescue_flow.config", "rescue_flow")),
]
# The flat modules a newcomer meets first; everything else is in a package.
MAX_TOP_LEVEL_MODULES = 8


def layer_of(module: str) -> int:
    best, index = "", -1
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and \
                    len(prefix) > len(best):
                best, index = prefix, position
    assert index >= 0, f"{module} is in no layer: add it to LAYERS"
    return index


def imported_modules(module: str, source: str) -> Iterator[str]:
    """The rescue_flow modules ``source`` imports (``from rescue_flow import x``
    names module ``rescue_flow.x``), inside functions too."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                yield f"{base}.{alias.name}"


def climbing_imports(modules: Iterable[tuple[str, str]]) -> list[str]:
    """``importer -> imported (layer -> higher layer)`` for each climbing import."""
    found = []
    for module, source in modules:
        own = layer_of(module)
        for imported in imported_modules(module, source):
            if imported != "rescue_flow" and not imported.startswith("rescue_flow."):
                continue
            if layer_of(imported) < own:
                found.append(f"{module} -> {imported} ({LAYERS[own][0]} -> "
                             f"{LAYERS[layer_of(imported)][0]})")
    return found


def package_modules() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path.read_text(encoding="utf-8")


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert climbing_imports(package_modules()) == []


def test_a_climbing_import_is_caught_and_named() -> None:
    tasks = ("rescue_flow.tasks.example", "from rescue_flow.engine import runner\n")
    lazy = ("rescue_flow.hyperv.example",
            "def f():\n    from rescue_flow.messaging.protocol import Router\n")
    relative = ("rescue_flow.messaging.bus2", "from . import nova_intake\n")
    assert climbing_imports([tasks, lazy, relative]) == [
        "rescue_flow.tasks.example -> rescue_flow.engine.runner (tasks -> engine)",
        "rescue_flow.hyperv.example -> rescue_flow.messaging.protocol.Router "
        "(hyperv -> messages)",
        "rescue_flow.messaging.bus2 -> rescue_flow.messaging.nova_intake (bus -> intake)",
    ]


def test_imports_downwards_and_within_a_layer_pass() -> None:
    runner = ("rescue_flow.engine.runner",
              "from rescue_flow import requests\nfrom rescue_flow.engine import states\n"
              "from rescue_flow.flows import get_rescue_flow\nimport os\n")
    assert climbing_imports([runner]) == []


def test_every_module_has_a_layer() -> None:
    for module, _ in package_modules():
        layer_of(module)


def test_the_package_root_holds_few_modules() -> None:
    flat = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(flat) <= MAX_TOP_LEVEL_MODULES, flat
