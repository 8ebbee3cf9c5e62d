"""``rescue-flow rescue|unrescue --json``: only JSON on stdout, for scripts.

A worker runs on kombu's in-memory broker and a simulated host; the client
is run through cli.main with a config file naming the same exchange and
topics.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from msgkit import GEN1_IMAGE, client_config_file, make_conf, seed_host

from rescue_flow import cli
from rescue_flow.service.worker import Worker

MEMORY = "kombu+memory:////"
HOST = "hv-json-1"
TIMEOUT = 20


pytestmark = pytest.mark.usefixtures("restore_logging")

@pytest.fixture
def conf(tmp_path, unique_name) -> Any:
    return make_conf(str(tmp_path), HOST, MEMORY, unique_name)


@pytest.fixture
def client(conf, tmp_path, capsys) -> Any:
    """Run ``rescue-flow ARGS...`` as a client; returns (exit code, stdout, stderr)."""
    path = client_config_file(conf, tmp_path, MEMORY, HOST)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["--config-file", path, *args])
        printed = capsys.readouterr()
        return code, printed.out, printed.err

    return run


def test_wait_json_prints_only_the_result(conf, client) -> None:
    _sim, (gen1, _) = seed_host(conf)
    worker = Worker(conf)
    worker.start()
    try:
        code, out, err = client("rescue", gen1, "--image", GEN1_IMAGE, "--wait", "--json",
                                "--timeout", str(TIMEOUT))
    finally:
        worker.stop()
        worker.wait()
    assert code == 0, err
    result = json.loads(out)  # nothing else on stdout: no steps, no headline
    assert (result["action"], result["instance_uuid"], result["host"], result["outcome"]) \
        == ("rescue", gen1, HOST, "success")
    assert result["request_id"].startswith("client-")
    assert "StartRescueVM" in result["step_durations"]
    assert result["failed_step"] is None


def test_wait_json_of_a_failed_rescue_exits_1_with_the_failed_step(conf, client) -> None:
    sim, (gen1, _) = seed_host(conf)
    sim.set_fault("create_vm", "permanent")
    worker = Worker(conf)
    worker.start()
    try:
        code, out, _ = client("rescue", gen1, "--wait", "--json", "--timeout", str(TIMEOUT))
    finally:
        worker.stop()
        worker.wait()
    result = json.loads(out)
    assert code == 1
    assert (result["outcome"], result["failed_step"]) == ("failed", "CreateRescueVM")
    assert "CreateRescueVM" in result["reverted_steps"]


def test_json_without_wait_prints_the_queued_request(conf, client) -> None:
    code, out, _ = client("unrescue", "00000000-0000-4000-8000-000000000001", "--json")
    assert code == 0
    queued = json.loads(out)
    assert queued["queued"] is True
    assert (queued["action"], queued["instance_uuid"], queued["host"], queued["source"]) == (
        "unrescue", "00000000-0000-4000-8000-000000000001", HOST, "client")


def test_json_leaves_errors_on_stderr_and_stdout_empty(conf, client) -> None:
    code, out, err = client("unrescue", "00000000-0000-4000-8000-000000000001",
                            "--host", "hv-nobody", "--wait", "--json", "--timeout", "0.3")
    assert (code, out) == (4, "")
    assert "no result for request" in err
