"""Logging for every command, through oslo.log, and the request on each line.

The worker logs at INFO (``--debug``: DEBUG, every os-win call included).
Foreground commands print what the operator needs themselves, so they log
only warnings, and to stderr (stdout is theirs: tables, ``--json``);
TaskFlow's own report of a failed flow (a traceback, ~60 lines for a
quarantine) is dropped there, since the command prints the outcome and
where to read the rest.

While a request is handled (its intake, its flow, each task, each os-win
call) :func:`request_context` keeps an oslo.context ``RequestContext`` for
the thread, so oslo.log writes every line with
``logging_context_format_string``, which names the request id and the
instance (``[None <request id> - - - - - -] [instance: <uuid>] ...``), as
nova-compute's own lines do. Flows run on the worker's pool threads and
tasks run on the thread of their flow (TaskFlow's serial engine), so one
context per job covers every line of it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from oslo_context import context as oslo_context
from oslo_log import log as oslo_logging


def setup(conf: Any, daemon: bool) -> None:
    if not daemon:
        # stdout is the command's own output (tables, --json); oslo.log would
        # write there when no log file is set, so a warning would corrupt it.
        conf.set_default("use_stderr", True)
    oslo_logging.setup(conf, "rescue-flow")
    if conf.debug:
        return
    if not daemon:
        logging.getLogger().setLevel(logging.WARNING)
        # TaskFlow logs a failed flow's traceback at ERROR; the command
        # prints the outcome, and 'rescue-flow status UUID' has every step.
        logging.getLogger("taskflow").setLevel(logging.CRITICAL)
        # oslo.messaging logs each failed connection attempt at ERROR; the
        # client says in one line that it could not reach the broker.
        logging.getLogger("oslo.messaging").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def request_context(request_id: Any, instance_uuid: Any) -> Iterator[None]:
    """Name ``request_id`` and ``instance_uuid`` on every log line of this
    thread until the block ends; the context before it comes back after."""
    previous = oslo_context.get_current()
    oslo_context.RequestContext(
        request_id=request_id if isinstance(request_id, str) and request_id else "-",
        resource_uuid=instance_uuid if isinstance(instance_uuid, str) else None,
        overwrite=True)
    try:
        yield
    finally:
        if previous is not None:
            previous.update_store()
        else:
            _clear_context()


def _clear_context() -> None:
    # oslo.context stores the current context in a thread-local and offers no
    # call to remove it; a pool thread must not keep naming the last request.
    # tests/functional/test_operations.py fails if this stops working.
    oslo_context._request_store.__dict__.pop("context", None)
