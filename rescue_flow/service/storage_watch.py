"""Whether the history database answers, and waiting until it does again.

When a write of the history gives up (``[persistence] storage_retry_timeout``
ran out: :class:`~rescue_flow.exceptions.StorageUnavailable`), the worker
marks storage down here. From then on no new flow starts and no new request
is recorded: the threads that would do so wait in :meth:`wait_until_up`,
which probes the database with backoff, holding their messages unacknowledged
(they go back to the broker if the worker stops meanwhile). Once a probe
answers, everything waiting goes on, and the request that was left is resumed
in its place, before later requests for its instance.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

LOG = logging.getLogger(__name__)


class StorageWatch:
    def __init__(self, ping: Callable[[], None], stopping: threading.Event,
                 first_probe: float = 0.2, max_interval: float = 10.0) -> None:
        self._ping = ping
        self._stopping = stopping
        self._first_probe = first_probe
        self._max_interval = max_interval
        self._down = False
        self._lock = threading.Lock()

    def down(self, error: BaseException) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        LOG.error("%s: taking no new request until the history database answers "
                  "again", error)

    def wait_until_up(self) -> bool:
        """Block while storage is down; False when the worker stops first."""
        delay = self._first_probe
        while self._down:
            if self._stopping.wait(delay):
                return False
            try:
                self._ping()
            except Exception as exc:
                LOG.debug("History database still unavailable: %s", exc)
                delay = min(delay * 2, self._max_interval)
                continue
            with self._lock:
                if self._down:
                    self._down = False
                    LOG.info("The history database answers again: taking requests")
        return not self._stopping.is_set()
