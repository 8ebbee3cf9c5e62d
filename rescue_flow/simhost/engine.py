"""How one os-win call runs against the state file.

Every public method of the Sim*Utils classes is an ``@oswin_call``. A call:

1. sleeps for the method's injected latency (``set_latency``, else the
   cost profile's figure: rescue_flow.simhost.costs), outside the lock, so
   other threads and processes go on meanwhile (like a slow WMI job); the
   latency is read from this process's cached state when the files show
   it current, else under the lock;
2. takes the lock and loads the state (cached when unchanged);
3. appends ``{"method", "args"}`` to the call log, with ``"cost"``, the
   seconds it slept, when it slept (so a call that then fails or crashes is
   still on record);
4. counts the call against the method's fault, if one is armed, and
   persists the count; a fault then raises, or exits the process;
5. applies the call and writes what it changed, if anything;
6. releases the lock.

The decorated function takes the state as its second parameter; callers
never see it: ``__signature__`` is os-win's signature, which the contract
test compares with os-win's own.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rescue_flow.simhost import changes, faults, oserrors, store
from rescue_flow.simhost.model import HostState, untouched
from rescue_flow.simhost.store import StateStore

F = TypeVar("F", bound=Callable[..., Any])
Body = Callable[[HostState, dict[str, Any]], Any]


class Engine:
    """Runs os-win calls against one state file."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def invoke(self, method: str, args: dict[str, Any], body: Body,
               mutates: bool, fresh_result: bool = False) -> Any:
        # Known without queueing for the lock, when this process's cache is current.
        delay = self.store.peek(lambda data: faults.latency(data, method))
        paid = delay or 0.0
        if delay:
            time.sleep(delay)
        while True:
            with self.store.locked() as tx:
                delay = faults.latency(tx.data, method)
                if paid or not delay:
                    return self._apply(tx, method, args, body, mutates, fresh_result,
                                       paid)
            time.sleep(delay)
            paid = delay

    def _apply(self, tx: Any, method: str, args: dict[str, Any], body: Body,
               mutates: bool, fresh_result: bool, paid: float = 0.0) -> Any:
        record: dict[str, Any] = {"method": method, "args": args}
        if paid:
            record["cost"] = round(paid, 6)  # what the call slept: benchmarks sum it
        self.store.append_call(record)
        changed, mode = faults.consume(tx.data, method)
        if changed:
            tx.commit(untouched())  # only the fault's counter moved
        if mode == faults.CRASH_BEFORE:
            _crash(tx)
        if mode in (faults.PERMANENT, faults.TRANSIENT):
            if oserrors.never_raises(method):
                return oserrors.fallback(method)
            raise faults.error_for(method, mode)
        try:
            # Copies both ways: the state must never share objects with the
            # caller, or a caller's later edit would change the cached state.
            state = HostState(tx.data)
            result = body(state, _copied(args))
        except BaseException:
            tx.discard()  # the body may have half-applied its change in memory
            if mode == faults.CRASH_AFTER:
                _crash(tx)
            raise
        if mutates:
            tx.commit(state.touched)
        if mode == faults.CRASH_AFTER:
            _crash(tx)
        if mode == faults.LOST_ANSWER:
            if oserrors.never_raises(method):
                return oserrors.fallback(method)
            raise faults.error_for(method, mode)
        if fresh_result:
            if store.VERIFY_TOUCHED:
                _check_shares_nothing(method, result, tx.data)
            return result
        return _copied(result)


def _containers(value: Any) -> Iterator[int]:
    """The ids of the lists and dicts in ``value``, itself included."""
    if isinstance(value, dict):
        yield id(value)
        items: Any = value.values()
    elif isinstance(value, list):
        yield id(value)
        items = value
    elif isinstance(value, tuple):
        items = value
    else:
        return
    for item in items:
        yield from _containers(item)


def _check_shares_nothing(method: str, result: Any, state: dict[str, Any]) -> None:
    """Under the tests: a result handed out uncopied holds no part of the state."""
    shared = set(_containers(result)) & set(_containers(state))
    if shared:
        raise AssertionError(f"simulated host: {method} says its result is built fresh, "
                             f"yet it holds {len(shared)} list(s) or dict(s) of the state")


def _copied(value: Any) -> Any:
    try:
        return changes.clone(value)  # fast for the plain data os-win passes
    except Exception:  # something pickle refuses (a test's odd argument)
        return copy.deepcopy(value)


def _crash(tx: Any) -> None:
    tx.make_durable()  # os._exit skips the commit at the end of the call
    os._exit(faults.CRASH_EXIT_CODE)


def oswin_call(*, mutates: bool, fresh_result: bool = False) -> Callable[[F], F]:
    """Make ``func(self, state, <os-win parameters>)`` an os-win method.

    ``mutates=False`` marks a read: it never writes the state file (unless
    a fault's counter moved). ``fresh_result=True``: the method builds its
    result anew (no list or dict of the state in it), so it is handed out
    without the copy every other result gets; for the host-wide listings,
    whose copies were a fifth of the simulated host's CPU at 300 VMs (B3).
    The tests check the promise (RESCUE_FLOW_SIMHOST_VERIFY).
    """
    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        params = list(sig.parameters.values())
        oswin_params = params[2:]  # without self and the state
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in oswin_params), func
        public = sig.replace(parameters=oswin_params)
        name = func.__name__

        @functools.wraps(func)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = public.bind(*args, **kwargs)
            bound.apply_defaults()
            return self._engine.invoke(
                name, dict(bound.arguments),
                lambda state, a: func(self, state, **a), mutates, fresh_result)

        call.__signature__ = sig.replace(parameters=[params[0], *oswin_params])  # type: ignore[attr-defined]
        call.__oswin_call__ = True  # type: ignore[attr-defined]
        call.__oswin_mutates__ = mutates  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]
    return decorate


class SimUtils:
    """Base of the Sim*Utils classes: holds the engine, offers nothing public."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine


def oswin_methods(cls: type) -> list[str]:
    """Names of the os-win methods a Sim*Utils class offers."""
    return sorted(name for name in dir(cls)
                  if getattr(getattr(cls, name), "__oswin_call__", False))
