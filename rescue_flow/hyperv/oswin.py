"""The one place rescue-flow imports os-win.

Everything else in the package (flows, tasks, CLI, listener) talks to
:class:`rescue_flow.hyperv.host.HyperVHost`, which receives os-win utility
objects (or the simulated host's look-alikes) and never names os-win types.
The simulated host imports ``os_win.constants`` and ``os_win.exceptions``
itself, on purpose: it must raise exactly what os-win raises.

os-win imports eventlet and warns on import off Windows; the warnings are
silenced here so that they do not reach operators on every command.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from os_win import constants, exceptions

__all__ = ["constants", "exceptions", "real_utils"]


def real_utils() -> dict[str, Any]:
    """os-win's utility objects for this Windows host (needs WMI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from os_win import utilsfactory

    return {
        "vmutils": utilsfactory.get_vmutils(),
        "vhdutils": utilsfactory.get_vhdutils(),
        "pathutils": utilsfactory.get_pathutils(),
        "netutils": utilsfactory.get_networkutils(),
    }
