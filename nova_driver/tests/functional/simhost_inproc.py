"""The simulated Hyper-V host inside the Nova process, for os-win's side of
the compute driver (``get_info``, ``destroy``, compute-hyperv's vmops).

``rescue_flow.simhost`` needs only the standard library (its state is an
SQLite database), oslo.config and os-win, all of which Nova's environment
has; the rest of ``rescue_flow`` (TaskFlow, oslo.messaging of another
release...) does not belong there. So this module imports exactly
``rescue_flow.simhost`` from the repository, without putting the repository
on ``sys.path``, and refuses every other ``rescue_flow`` module in this
process: a driver that imported the worker package would fail these tests,
as it would fail in a real nova-compute.

The state file is the worker's: its process and this one share the host
(each call of the simulated host is one SQLite transaction).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
ALLOWED = ("rescue_flow", "rescue_flow.simhost")


class _SimhostOnly(importlib.abc.MetaPathFinder):
    """Finds ``rescue_flow.simhost*`` in the repository; refuses the rest
    of ``rescue_flow`` with an ImportError that says why."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "rescue_flow" and not fullname.startswith("rescue_flow."):
            return None
        if not any(fullname == ok or fullname.startswith(ok + ".") for ok in ALLOWED[1:]) \
                and fullname != "rescue_flow":
            raise ImportError(
                f"{fullname} is the worker's package: nothing in nova-compute's "
                "environment may import it (only the tests' simulated host, "
                "rescue_flow.simhost, is loaded here)")
        search = [str(REPO)] if fullname == "rescue_flow" else path
        return importlib.machinery.PathFinder.find_spec(fullname, search)


_FINDER = _SimhostOnly()


def _install() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def open_host(state_file: str | Path) -> Any:
    """``rescue_flow.simhost.SimulatedHost`` on an existing state file."""
    _install()
    from rescue_flow.simhost import SimulatedHost

    return SimulatedHost(str(state_file))
