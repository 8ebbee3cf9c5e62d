"""KeyedScheduler: one job at a time per key in submission order, bounded
parallelism across keys. Every wait below is on an event, never a sleep."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from rescue_flow.engine.scheduler import KeyedScheduler

TIMEOUT = 10


@pytest.fixture
def scheduler() -> Iterator[KeyedScheduler]:
    scheduler = KeyedScheduler(max_workers=2)
    yield scheduler
    scheduler.shutdown(wait=True, timeout=TIMEOUT)


class Journal:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def job(self, name: str, release: threading.Event | None = None,
            started: threading.Event | None = None):
        def run() -> None:
            with self._lock:
                self.lines.append(f"{name} start")
            if started is not None:
                started.set()
            if release is not None:
                assert release.wait(TIMEOUT)
            with self._lock:
                self.lines.append(f"{name} end")
        return run


def test_jobs_of_one_key_run_one_at_a_time_in_submission_order(scheduler) -> None:
    journal = Journal()
    release = threading.Event()
    first_started = threading.Event()
    scheduler.submit("vm-a", journal.job("a1", release, first_started))
    for name in ("a2", "a3", "a4"):
        scheduler.submit("vm-a", journal.job(name))
    assert first_started.wait(TIMEOUT)
    # a1 holds vm-a: its followers wait although a thread is free.
    assert scheduler.counts() == (1, 3)
    release.set()
    assert scheduler.wait_idle(TIMEOUT)
    assert journal.lines == ["a1 start", "a1 end", "a2 start", "a2 end",
                             "a3 start", "a3 end", "a4 start", "a4 end"]


def test_different_keys_run_in_parallel(scheduler) -> None:
    both = threading.Barrier(2, timeout=TIMEOUT)
    done = []
    # Each job waits for the other: they can only finish if they overlap.
    scheduler.submit("vm-a", lambda: done.append(both.wait()))
    scheduler.submit("vm-b", lambda: done.append(both.wait()))
    assert scheduler.wait_idle(TIMEOUT)
    assert sorted(done) == [0, 1]


def test_no_more_than_max_workers_jobs_run_at_once(scheduler) -> None:
    release = threading.Event()
    started = [threading.Event() for _ in range(3)]
    journal = Journal()
    for index, event in enumerate(started):
        scheduler.submit(f"vm-{index}", journal.job(f"j{index}", release, event))
    assert started[0].wait(TIMEOUT) and started[1].wait(TIMEOUT)
    # Two threads are busy; the third job, free to run by its key, waits.
    assert scheduler.counts() == (2, 1)
    assert not started[2].is_set()
    release.set()
    assert started[2].wait(TIMEOUT)
    assert scheduler.wait_idle(TIMEOUT)


def test_a_waiting_key_does_not_block_other_keys(scheduler) -> None:
    release = threading.Event()
    a_started = threading.Event()
    journal = Journal()
    scheduler.submit("vm-a", journal.job("a1", release, a_started))
    scheduler.submit("vm-a", journal.job("a2"))
    assert a_started.wait(TIMEOUT)
    b_done = threading.Event()
    scheduler.submit("vm-b", b_done.set)
    assert b_done.wait(TIMEOUT)  # while a1 still holds vm-a
    release.set()
    assert scheduler.wait_idle(TIMEOUT)


def test_jobs_without_key_are_not_serialized(scheduler) -> None:
    both = threading.Barrier(2, timeout=TIMEOUT)
    done = []
    scheduler.submit(None, lambda: done.append(both.wait()))
    scheduler.submit(None, lambda: done.append(both.wait()))
    assert scheduler.wait_idle(TIMEOUT)
    assert len(done) == 2


def test_a_failing_job_does_not_stop_its_key_or_its_thread() -> None:
    scheduler = KeyedScheduler(max_workers=1)
    ran = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    scheduler.submit("vm-a", fail)
    scheduler.submit("vm-a", ran.set)
    assert ran.wait(TIMEOUT)
    scheduler.shutdown(wait=True, timeout=TIMEOUT)


def test_shutdown_lets_running_jobs_finish_and_returns_the_others() -> None:
    scheduler = KeyedScheduler(max_workers=1)
    release = threading.Event()
    started = threading.Event()
    journal = Journal()
    scheduler.submit("vm-a", journal.job("a1", release, started))
    scheduler.submit("vm-b", journal.job("b1"))
    scheduler.submit("vm-a", journal.job("a2"))
    assert started.wait(TIMEOUT)
    dropped = scheduler.shutdown(wait=False)
    assert sorted(job.key for job in dropped) == ["vm-a", "vm-b"]
    assert scheduler.submit("vm-c", journal.job("c1")) is False
    release.set()
    scheduler.join(TIMEOUT)
    assert journal.lines == ["a1 start", "a1 end"]


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeyedScheduler(max_workers=0)
