"""requirements.txt declares every library the package imports, and bounds
those whose private internals it uses to versions that are installed here."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# Bounded above because rescue-flow uses their internals
# (tests/contract/test_private_internals.py).
PRIVATE_USE = {"taskflow", "oslo-messaging", "oslo-context"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> dict[str, Requirement]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            found[_normal(requirement.name)] = requirement
    return found


def _imported_top_levels() -> set[str]:
    names = set()
    for path in (ROOT / "rescue_flow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"rescue_flow", "msvcrt"}


def test_every_imported_library_is_declared() -> None:
    declared = _requirements()
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_levels()):
        distributions = {_normal(name) for name in providers.get(module, [module])}
        if not distributions & declared.keys():
            missing[module] = sorted(distributions)
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_libraries_used_privately_have_an_upper_bound_that_the_tested_version_meets(
        ) -> None:
    declared = _requirements()
    for name in PRIVATE_USE:
        requirement = declared[name]
        assert any(spec.operator in ("<", "<=", "==", "~=")
                   for spec in requirement.specifier), f"{name} has no upper bound"
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), \
            f"{name} {installed} is installed but requirements.txt says {requirement}"
