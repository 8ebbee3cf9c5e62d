"""The adapter calls only methods that os-win's real classes offer.

The adapter reaches os-win through ``self._call(self._<utils>, "<method>", ...)``;
this test reads those calls from the source, so a method name that os-win lacks
fails here, on Linux, before it would fail on a Windows host. (The simulated
host's contract test checks that the simulator matches os-win's signatures.)
"""

from __future__ import annotations

import ast
import pathlib
import warnings

import pytest

import rescue_flow.hyperv

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from os_win.utils.compute.vmutils import VMUtils
    from os_win.utils.network.networkutils import NetworkUtils
    from os_win.utils.pathutils import PathUtils
    from os_win.utils.storage.virtdisk.vhdutils import VHDUtils

UTILS_ATTRIBUTES = {"_vm": VMUtils, "_vhd": VHDUtils, "_path": PathUtils,
                    "_net": NetworkUtils}
ADAPTER_DIR = pathlib.Path(rescue_flow.hyperv.__file__).parent


def adapter_calls() -> list[tuple[str, str, str]]:
    """(file, utils attribute, method) for every os-win call in the adapter."""
    found = []
    for path in sorted(ADAPTER_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_call" and len(node.args) >= 2):
                continue
            utils, method = node.args[0], node.args[1]
            assert isinstance(utils, ast.Attribute) and isinstance(method, ast.Constant), (
                f"{path.name}:{node.lineno}: os-win calls must name their utils and "
                "method literally, so this test can check them")
            found.append((path.name, utils.attr, method.value))
    return found


CALLS = adapter_calls()


def test_the_adapter_makes_os_win_calls_this_test_can_see():
    assert len(CALLS) > 30
    assert {utils for _, utils, _ in CALLS} == set(UTILS_ATTRIBUTES)


@pytest.mark.parametrize(("source", "utils", "method"), CALLS,
                         ids=[f"{u}.{m}" for _, u, m in CALLS])
def test_each_called_method_exists_on_the_real_os_win_class(source, utils, method):
    cls = UTILS_ATTRIBUTES[utils]
    assert callable(getattr(cls, method, None)), f"{source}: {cls.__name__}.{method}"
