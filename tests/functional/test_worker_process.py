"""``rescue-flow worker`` as a real process: SIGTERM and SIGINT stop it cleanly.

The broker is kombu's in-memory one, private to the worker process: these
tests are about the process, not about messages (see
tests/integration/test_message_delivery_rabbitmq.py for a flow running
through a SIGTERM).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from rescue_flow.commands import worker as worker_command

TIMEOUT = 30
# Well within any grace time: a stop with nothing running is immediate.
STOP_PROMPTLY = 10


def _start(tmp_path: Path, transport_url: str = "kombu+memory:////",
           started_line: str = "Worker for host hv-proc started", extra_conf: str = "",
           ) -> tuple[subprocess.Popen[str], list[str]]:
    conf = tmp_path / "worker.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {transport_url}\nhost = hv-proc\n"
        f"state_path = {tmp_path / 'state'}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {tmp_path / 'vms'}\n"
        + extra_conf)
    subprocess.run([sys.executable, "-W", "ignore", "-m", "rescue_flow.cli",
                    "--config-file", str(conf), "sim", "init"],
                   check=True, capture_output=True, timeout=TIMEOUT)
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "rescue_flow.cli", "--config-file", str(conf),
         "worker"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None  # oslo.log writes to stdout by default
        for line in process.stdout:
            lines.append(line)
            if started_line in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    if not started.wait(TIMEOUT):
        process.kill()
        pytest.fail("the worker never said it started:\n" + "".join(lines))
    return process, lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_worker_cleanly(tmp_path: Path, signum: int) -> None:
    process, lines = _start(tmp_path)
    process.send_signal(signum)
    assert process.wait(TIMEOUT) == 0, "".join(lines)
    log = "".join(lines)
    assert "finishing the running flows" in log
    assert "Worker for host hv-proc stopped" in log
    assert "Traceback" not in log


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_a_worker_whose_broker_is_unreachable_at_once(
        tmp_path: Path, signum: int) -> None:
    # Nothing listens on the port: oslo.messaging retries the connection
    # forever, in the thread that starts the listener.
    url = f"rabbit://guest:guest@127.0.0.1:{_unused_port()}/"
    process, lines = _start(tmp_path, url, started_line="Connection failed")
    began = time.monotonic()
    process.send_signal(signum)
    try:
        code = process.wait(STOP_PROMPTLY)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the worker outlived its stop:\n" + "".join(lines))
    assert code == worker_command.EXIT_OK, "".join(lines)
    assert time.monotonic() - began < STOP_PROMPTLY
    assert "Second stop signal" not in "".join(lines)


def test_a_worker_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    # As at boot, when the database server starts after the worker: the
    # worker retries (storage_retry_timeout), it does not exit at once.
    database = f"postgresql+psycopg2://rf:rf@127.0.0.1:{_unused_port()}/rescue_flow"
    process, lines = _start(
        tmp_path, started_line="History storage error",
        extra_conf=f"[persistence]\nconnection = {database}\n"
                   "storage_retry_timeout = 600\n")
    time.sleep(2)
    assert process.poll() is None, "".join(lines)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_PROMPTLY)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the worker outlived its stop:\n" + "".join(lines))


def test_a_stop_that_outlasts_the_grace_time_exits_with_its_own_code() -> None:
    class StuckWorker:
        host = "hv-stuck"
        flows = mock.Mock()

        def running_and_waiting(self) -> tuple[int, int]:
            return (1, 0)

        def stop(self) -> None:
            pass

        def wait(self) -> None:
            threading.Event().wait(60)  # a flow that does not end in time

    starter = mock.Mock(worker=StuckWorker())
    starter.started.is_set.return_value = True
    began = time.monotonic()
    assert worker_command.stop_within(starter, grace=0.5) == \
        worker_command.EXIT_STOP_TIMEOUT
    assert time.monotonic() - began < 5
