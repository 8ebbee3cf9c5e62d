"""Injected faults and latencies, kept in the state file.

They live in the state file, not in memory, so one process (the CLI, a
test) can arm a fault that another (a worker) then hits, and so the
counters survive a crash.

A fault models what the *caller of os-win* sees after os-win's own
internal retries have given up (os-win retries set_vm_state on
WMIJobFailed, attach/detach on HyperVException, file removal on sharing
violations): one simulated failure stands for a whole failed os-win call.
It raises the class os-win raises for that method, permanent or transient
(rescue_flow.simhost.oserrors); a method that never raises (``exists``)
answers as it does when Windows fails it (False).

Counting, per method, from the moment the fault is set: the first ``after``
calls succeed, the next ``times`` calls fail (``None``: every later call),
then calls succeed again and the fault is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rescue_flow.simhost import costs, oserrors

PERMANENT = "permanent"
TRANSIENT = "transient"
CRASH_BEFORE = "crash-before"
CRASH_AFTER = "crash-after"
# The call takes effect, then its caller gets the transient error: WMI's
# connection dropped after Hyper-V ran the job (RPC_S_SERVER_UNAVAILABLE).
# A caller that simply calls again makes the change twice.
LOST_ANSWER = "lost-answer"
MODES = (PERMANENT, TRANSIENT, CRASH_BEFORE, CRASH_AFTER, LOST_ANSWER)

# The exit status of a process killed by a crash fault: distinctive, so a
# test can tell a simulated crash from a real one.
CRASH_EXIT_CODE = 86

def check_method(method: str, known: Iterable[str]) -> None:
    known = sorted(known)
    if method not in known:
        raise ValueError(f"the simulated host offers no method {method!r}; "
                         f"it offers: {', '.join(known)}")


def set_fault(data: dict[str, Any], method: str, mode: str, after: int = 0,
              times: int | None = None) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(MODES)}")
    if after < 0 or (times is not None and times < 1):
        raise ValueError("after must be >= 0 and times >= 1 (or None for always)")
    data["faults"][method] = {"mode": mode, "after": int(after),
                              "times": None if times is None else int(times), "seen": 0}


def set_latency(data: dict[str, Any], method: str, seconds: float) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"latency must be a number of seconds >= 0, not {seconds!r}")
    if seconds:
        data["latency"][method] = float(seconds)
    else:
        data["latency"].pop(method, None)


def clear(data: dict[str, Any]) -> None:
    data["faults"] = {}
    data["latency"] = {}


def latency(data: dict[str, Any], method: str) -> float:
    """The per-method override if set, else the cost profile's figure."""
    override = data["latency"].get(method)
    if override is not None:
        return float(override)
    return costs.cost(data, method)


def consume(data: dict[str, Any], method: str) -> tuple[bool, str | None]:
    """Count one call of ``method``.

    Returns ``(state changed, mode to apply or None)``. The caller must
    persist the state when it changed, before anything else happens, so the
    count is never lost (not even by a crash fault).
    """
    fault = data["faults"].get(method)
    if fault is None:
        return False, None
    fault["seen"] += 1
    seen, after, times = fault["seen"], fault["after"], fault["times"]
    fires = seen > after and (times is None or seen <= after + times)
    if times is not None and seen >= after + times:
        del data["faults"][method]  # spent: later calls need not be counted
    return True, fault["mode"] if fires else None


def error_for(method: str, mode: str) -> BaseException:
    """What os-win raises for ``method`` when it fails (rescue_flow.simhost.oserrors)."""
    return oserrors.fault_error(method, transient=mode in (TRANSIENT, LOST_ANSWER))
