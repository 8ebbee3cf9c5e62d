"""The per-instance lock files, oslo.concurrency's inter-process locks: they
hold no descriptor, are pruned after use (also by Windows' rules, simulated
on any system), and still exclude other threads and processes."""

from __future__ import annotations

import multiprocessing
import os
import threading

from rescue_flow.engine import locks

UUID = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01"
FORK = multiprocessing.get_context("fork")


def test_instance_lock_files_are_pruned_and_hold_no_descriptor(tmp_path):
    lock_dir = str(tmp_path / "locks")
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for index in range(50):
        with locks.instance_lock(lock_dir, f"3f1c9a52-7b3e-4d8a-9e21-{index:012d}"):
            pass
    assert os.listdir(lock_dir) == []
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_a_lock_file_pruned_by_windows_rules_is_left_when_held_elsewhere(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(locks.sys, "platform", "win32")
    monkeypatch.setattr(locks.os, "remove", lambda path: (_ for _ in ()).throw(
        PermissionError(13, "being used by another process")))
    with locks.instance_lock(str(tmp_path), UUID):
        pass  # no error: the next holder prunes it
    assert os.listdir(tmp_path) == [f"{UUID}.lock"]


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_between_threads(tmp_path):
    path = str(tmp_path / "x.lock")
    inside = threading.Event()
    release = threading.Event()
    entered: list[str] = []

    def holder() -> None:
        with locks.file_lock(path), locks.file_lock(path):  # re-entrant
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(5)
    waiter = threading.Thread(target=lambda: _enter_and_note(path, entered))
    waiter.start()
    waiter.join(0.3)
    assert entered == []  # still held
    release.set()
    thread.join(5)
    waiter.join(5)
    assert entered == ["in"]


def _enter_and_note(path: str, entered: list[str]) -> None:
    with locks.file_lock(path):
        entered.append("in")


def _count_under_lock(lock_dir: str, counter: str, times: int) -> None:
    for _ in range(times):
        with locks.instance_lock(lock_dir, UUID):
            with open(counter, "rb") as handle:
                value = int(handle.read() or b"0")
            with open(counter, "wb") as handle:
                handle.write(str(value + 1).encode())


def test_pruned_lock_files_still_exclude_other_processes(tmp_path):
    counter = str(tmp_path / "counter")
    open(counter, "wb").close()
    children = [FORK.Process(target=_count_under_lock,
                             args=(str(tmp_path / "locks"), counter, 100))
                for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    with open(counter, "rb") as handle:
        assert int(handle.read()) == 400  # no lost update: never two holders
