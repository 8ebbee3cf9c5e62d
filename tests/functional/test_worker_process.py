"""``rescue-flow worker`` as a real process: SIGTERM and SIGINT stop it cleanly.

The broker is kombu's in-memory one, private to the worker process: these
tests are about the process, not about messages (see
tests/integration/test_message_delivery_rabbitmq.py for a flow running
through a SIGTERM).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TIMEOUT = 30


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    conf = tmp_path / "worker.conf"
    conf.write_text(
        "[DEFAULT]\ntransport_url = kombu+memory:////\nhost = hv-proc\n"
        f"state_path = {tmp_path / 'state'}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {tmp_path / 'vms'}\n")
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
            if "Worker for host hv-proc started" in line:
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
