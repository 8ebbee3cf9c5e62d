"""The simulated host shared by real processes and threads, and crash faults.

These start Python subprocesses (about 0.3 s each, mostly importing
os-win's exceptions).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rescue_flow.simhost import SimulatedHost
from rescue_flow.simhost.oswin import constants

pytestmark = pytest.mark.slow

UUID1 = "11111111-2222-4333-8444-555555555555"
OFF = constants.HYPERV_VM_STATE_DISABLED


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    host = SimulatedHost.init(str(tmp_path / "host.json"), "/sim/instances")
    host.add_image("img", 1, "vhdx")
    host.add_vm("vm1", UUID1, "img")
    return host


POWER_OFF = """
    import sys
    from rescue_flow.simhost import SimulatedHost
    SimulatedHost(sys.argv[1]).vmutils.set_vm_state("vm1", 3)
"""


def test_a_crash_before_fault_kills_the_process_before_the_call_takes_effect(host):
    before = host.view_json()
    host.set_fault("set_vm_state", "crash-before")
    result = _run(POWER_OFF, host.state_file)
    assert result.returncode == SimulatedHost.CRASH_EXIT_CODE, result.stderr
    assert host.view_json() == before
    assert host.calls()[-1] == {"method": "set_vm_state",
                                "args": {"vm_name": "vm1", "req_state": OFF}}


def test_a_crash_after_fault_kills_the_process_after_the_effect_is_written(host):
    host.set_fault("set_vm_state", "crash-after", times=1)
    result = _run(POWER_OFF, host.state_file)
    assert result.returncode == SimulatedHost.CRASH_EXIT_CODE, result.stderr
    assert host.view()["vms"]["vm1"]["power_state"] == "off"
    # The fault was spent by the crashed process: the next call runs normally.
    host.vmutils.set_vm_state("vm1", constants.HYPERV_VM_STATE_ENABLED)
    assert host.view()["vms"]["vm1"]["power_state"] == "running"


def test_a_crash_fault_counts_calls_across_processes(host):
    host.set_fault("set_vm_state", "crash-before", after=1, times=1)
    assert _run(POWER_OFF, host.state_file).returncode == 0
    assert _run(POWER_OFF, host.state_file).returncode == SimulatedHost.CRASH_EXIT_CODE
    assert _run(POWER_OFF, host.state_file).returncode == 0


MAKE_DIRS = """
    import sys, threading
    from rescue_flow.simhost import SimulatedHost
    state_file, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host = SimulatedHost(state_file)

    def work(thread):
        for i in range(count):
            host.pathutils.makedirs(f"/sim/{tag}/t{thread}/d{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def test_two_processes_with_two_threads_each_lose_no_change(host):
    host.clear_calls()
    count = 150
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(MAKE_DIRS),
                               host.state_file, tag, str(count)],
                              stderr=subprocess.PIPE, text=True)
             for tag in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    missing = [f"/sim/{tag}/t{t}/d{i}" for tag in ("a", "b") for t in range(2)
               for i in range(count)
               if not host.pathutils.exists(f"/sim/{tag}/t{t}/d{i}")]
    assert missing == []
    makedirs = [c for c in host.calls() if c["method"] == "makedirs"]
    assert len(makedirs) == 4 * count  # every log line whole and present


def test_latency_does_not_hold_the_lock_so_other_callers_proceed(host):
    host.set_latency("get_vm_state", 0.6)
    slow = threading.Thread(target=host.vmutils.get_vm_state, args=("vm1",))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    other = SimulatedHost(host.state_file)
    other.vmutils.set_vm_state("vm1", OFF)
    assert time.monotonic() - started < 0.3
    slow.join()
