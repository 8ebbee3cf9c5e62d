"""Windows behaviour, simulated on any system: a replace refused while another
process holds the file (PermissionError), binary descriptors (os.O_BINARY),
writes that come back short; and the per-instance lock files, which are
oslo.concurrency's locks, hold no descriptor and are pruned."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from rescue_flow import files, locks
from rescue_flow.simhost import SimulatedHost

UUID = "3f1c9a52-7b3e-4d8a-9e21-5a6b7c8d9e01"
FORK = multiprocessing.get_context("fork")


def test_a_replace_refused_while_the_file_is_held_open_is_retried(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    refusals = {"left": 3}
    real = os.replace

    def held_open(source, destination):
        if refusals["left"]:
            refusals["left"] -= 1
            raise PermissionError(13, "The process cannot access the file because it "
                                      "is being used by another process")
        return real(source, destination)

    monkeypatch.setattr(os, "replace", held_open)
    files.write_atomically(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert refusals["left"] == 0
    assert sorted(os.listdir(tmp_path)) == ["state.json"]  # no temp file left


def test_a_replace_refused_for_too_long_fails_and_leaves_the_old_file_whole(
        tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    monkeypatch.setattr(files, "REPLACE_TIMEOUT", 0.2)

    def always_held(source, destination):
        raise PermissionError(13, "being used by another process")

    monkeypatch.setattr(os, "replace", always_held)
    with pytest.raises(PermissionError):
        files.write_atomically(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        files.write_atomically(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:3])))
    files.write_atomically(str(tmp_path / "f"), b"0123456789" * 10)
    assert (tmp_path / "f").read_bytes() == b"0123456789" * 10


def test_descriptors_are_opened_in_binary_mode_where_windows_has_it(tmp_path,
                                                                     monkeypatch):
    fake_binary = 0x40000000  # not a POSIX flag: only what open_fd adds
    opened: list[int] = []
    real = os.open
    monkeypatch.setattr(files, "O_BINARY", fake_binary)
    monkeypatch.setattr(os, "open", lambda path, flags, mode=0o777:
                        opened.append(flags) or real(path, flags & ~fake_binary, mode))
    host = SimulatedHost.init(str(tmp_path / "sim.json"), str(tmp_path / "vms"))
    host.add_image("11111111-1111-4111-8111-111111111111", 1, "vhd")
    # tempfile.mkstemp (O_EXCL) adds os.O_BINARY itself where it exists.
    assert opened and all(flags & (fake_binary | os.O_EXCL) for flags in opened)
    assert any(flags & fake_binary for flags in opened)


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
