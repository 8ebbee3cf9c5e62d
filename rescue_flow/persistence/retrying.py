"""Storage errors: told apart from everything else, retried for a bounded time.

A history database fails in ways that pass: SQLite answers "database is
locked" when another process holds its write lock past the busy timeout, a
full disk frees up, a PostgreSQL server restarts and drops every session.
TaskFlow sees such an error while it saves a step's state and, after its own
three tries five seconds apart, stops the engine with it; the runner used to
take that for a failed step, revert a host that was fine and quarantine it.

Here every write of the history (TaskFlow's saves through
:class:`~rescue_flow.persistence.backend.RememberingConnection`, and the
history's own) is retried with exponential backoff (tenacity) for at most
``[persistence] storage_retry_timeout`` seconds; then
:class:`~rescue_flow.exceptions.StorageUnavailable` is raised. It is not a
``StorageFailure``, so TaskFlow does not retry it again: the engine stops
where it is, without reverting, and the request stays unfinished for a
resume.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import sqlalchemy as sa
import tenacity

from rescue_flow.exceptions import StorageUnavailable

LOG = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_RETRY_TIMEOUT = 60.0  # [persistence] storage_retry_timeout

# Errors of the disk under a database file, when SQLite's driver lets them out.
_DISK_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS)


def storage_error(exc: BaseException) -> BaseException | None:
    """The database or disk error in ``exc`` or its causes, if it has one.

    OperationalError covers "database is locked", "disk I/O error",
    "database or disk is full" and a PostgreSQL connection that is refused or
    was terminated; InterfaceError a connection already closed. An error in
    the statement itself (IntegrityError, ProgrammingError) is not one: it
    would fail again the same way.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return current.cause
        if isinstance(current, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return current
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return current
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def storage_unavailable(exc: BaseException) -> StorageUnavailable | None:
    """``exc`` as StorageUnavailable when a storage error is behind it.

    TaskFlow raises several failures of one run together as a WrappedFailure.
    """
    if isinstance(exc, StorageUnavailable):
        return exc
    for failure in getattr(exc, "_causes", None) or ():  # WrappedFailure's failures
        inner = getattr(failure, "exception", None)
        if inner is not None and storage_unavailable(inner) is not None:
            return storage_unavailable(inner)
    cause = storage_error(exc)
    return StorageUnavailable(cause) if cause is not None else None


class Retry:
    """How long, and how, storage calls are retried."""

    def __init__(self, timeout: float, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.timeout = timeout
        self.initial = initial
        self.maximum = maximum

    @classmethod
    def from_conf(cls, conf: Any) -> Retry:
        return cls(conf.persistence.storage_retry_timeout)

    def __call__(self, function: _F) -> _F:
        """``function``, retried on storage errors; StorageUnavailable after the timeout."""
        template = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retried),
            wait=(tenacity.wait_exponential(multiplier=self.initial, max=self.maximum) +
                  tenacity.wait_random(0, self.initial)),
            stop=tenacity.stop_after_delay(self.timeout),
            before_sleep=_log_retry, reraise=True)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                # A copy per call: a Retrying keeps the state of its attempts.
                return template.copy()(function, *args, **kwargs)
            except StorageUnavailable:
                raise
            except Exception as exc:
                cause = storage_error(exc)
                if cause is None:
                    raise
                raise StorageUnavailable(cause) from exc
        return cast(_F, wrapper)


def _retried(exc: BaseException) -> bool:
    return not isinstance(exc, StorageUnavailable) and storage_error(exc) is not None


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    LOG.warning("History storage error (attempt %d), retrying in %.2f s: %s",
                state.attempt_number, state.next_action.sleep if state.next_action else 0,
                storage_error(exc) if exc else exc)
