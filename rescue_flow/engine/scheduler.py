"""Run jobs in parallel, one at a time per key, in the order they were submitted.

The worker submits every incoming message here from the listener's polling
thread, so submission order is arrival order. Jobs that share a key (an
instance uuid) run one after the other in that order; jobs with different
keys run in parallel on at most ``max_workers`` threads. A job with key
``None`` has no ordering constraint.

This replaces oslo.messaging's executor, which hands messages to up to 64
threads that may reach the handler in any order.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    key: Hashable
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class KeyedScheduler:
    def __init__(self, max_workers: int, name: str = "flow") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._cond = threading.Condition()
        self._waiting: dict[Hashable, collections.deque[Job]] = {}
        # Keys whose next job may start now: not running, jobs waiting.
        self._ready: collections.deque[Hashable] = collections.deque()
        self._running: set[Hashable] = set()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max_workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable | None, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)`` behind the jobs of ``key``; False once shut down."""
        job = Job(object() if key is None else key, fn, args)
        with self._cond:
            if self._stopping:
                return False
            queue = self._waiting.setdefault(job.key, collections.deque())
            queue.append(job)
            if len(queue) == 1 and job.key not in self._running:
                self._ready.append(job.key)
                self._cond.notify()
        return True

    def counts(self) -> tuple[int, int]:
        """(jobs running, jobs waiting), for tests and metrics."""
        with self._cond:
            return (len(self._running),
                    sum(len(queue) for queue in self._waiting.values()))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._running and not self._waiting, timeout)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> list[Job]:
        """Start no new job; return the jobs that never started.

        Running jobs finish (a flow is not cut in the middle of a Hyper-V
        call); with ``wait`` this blocks until they have.
        """
        with self._cond:
            self._stopping = True
            dropped = [job for queue in self._waiting.values() for job in queue]
            self._waiting.clear()
            self._ready.clear()
            self._cond.notify_all()
        if wait:
            self.join(timeout)
        return dropped

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads to end, which they do after :meth:`shutdown`."""
        for thread in self._threads:
            thread.join(timeout)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._ready and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            key = self._ready.popleft()
            queue = self._waiting[key]
            job = queue.popleft()
            if not queue:
                del self._waiting[key]
            self._running.add(key)
            return job

    def _done(self, job: Job) -> None:
        with self._cond:
            self._running.discard(job.key)
            if job.key in self._waiting and not self._stopping:
                self._ready.append(job.key)
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                job.fn(*job.args)
            except Exception:
                # The listener's own handler catches everything it can; this is
                # the last line that keeps a worker thread alive.
                LOG.exception("Unexpected error in a scheduled job")
            finally:
                self._done(job)
