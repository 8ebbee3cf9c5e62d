"""The WMI cost profile: what each os-win call costs on a real Hyper-V host.

A call here costs nothing unless told; on Hyper-V each WMI query costs tens
of milliseconds, each WMI job a hundred or more, and a query that scans the
host's objects (a host-wide listing, or a lookup by name: WMI indexes
objects by id only) grows with the number of VMs. A profile says, per
method, ``base + per_vm * <VMs on the host>`` seconds; its file groups
methods by family (rescue_flow.simhost.oserrors) and may override one
method. ``wmi-profile.json`` beside this module is the default, its figures
are explained in docs/simulated-host.md.

The profile is stored in the state, resolved per method and scaled, so
every process sharing the host pays the same; ``set_latency`` (``sim
latency``) overrides it for one method.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from rescue_flow.simhost import oserrors

DEFAULT_PROFILE = "wmi"
_PACKAGED = {DEFAULT_PROFILE: os.path.join(os.path.dirname(__file__), "wmi-profile.json")}


def load(profile: str, scale: float = 1.0) -> dict[str, Any]:
    """Read a profile (``"wmi"`` or a JSON file) into what the state keeps:
    ``{"name", "scale", "methods": {method: [base, per_vm]}}``, every method."""
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a number >= 0, not {scale!r}")
    path = _PACKAGED.get(profile, profile)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read cost profile {profile!r}: {exc}") from None
    families, methods = raw.get("families", {}), raw.get("methods", {})
    unknown = set(methods) - set(oserrors.METHODS)
    if unknown:
        raise ValueError(f"cost profile {profile!r} names unknown methods: "
                         f"{', '.join(sorted(unknown))}")
    resolved = {}
    for method in oserrors.METHODS:
        cost = methods.get(method) or families.get(oserrors.family(method))
        if cost is None:
            raise ValueError(f"cost profile {profile!r} has no cost for {method} "
                             f"(family {oserrors.family(method)})")
        base, per_vm = float(cost.get("base", 0.0)), float(cost.get("per_vm", 0.0))
        if min(base, per_vm) < 0 or not math.isfinite(base + per_vm):
            raise ValueError(f"cost profile {profile!r}: bad cost for {method}")
        resolved[method] = [base * scale, per_vm * scale]
    return {"name": str(raw.get("name", profile)), "scale": scale, "methods": resolved}


def cost(data: dict[str, Any], method: str) -> float:
    """Seconds a call of ``method`` costs under the host's profile (0 without)."""
    profile = data.get("profile")
    if not profile:
        return 0.0
    base, per_vm = profile["methods"].get(method, (0.0, 0.0))
    return float(base + per_vm * len(data["vms"]))
