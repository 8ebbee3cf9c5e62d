"""Every log line of a request names the request and the instance.

The lines are formatted as the worker writes them: oslo.log's
ContextFormatter with the conf's ``logging_context_format_string``. A rescue
goes the whole way (Nova's event, the intake, the host's queue, the flow,
each task, each os-win call at debug level) and every line from
``rescue_flow.*`` on the way must carry both ids.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from msgkit import (
    GEN1_IMAGE,
    ResultLog,
    make_conf,
    nova_context,
    publishing_as_nova,
    seed_host,
    versioned_event,
)
from oslo_context import context as oslo_context
from oslo_log import formatters
from simsite import GEN1_UUID, make_site

from rescue_flow import cli
from rescue_flow.engine import logs
from rescue_flow.service.worker import Worker

MEMORY = "kombu+memory:////"
HOST = "hv-logs-1"


class Lines(logging.Handler):
    """Formats each record as the worker's log file would show it."""

    def __init__(self, conf: Any) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatters.ContextFormatter(project="rescue-flow", config=conf))
        self.lines: list[tuple[str, str, str]] = []  # (logger, thread, line)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lock:
            self.lines.append((record.name, record.threadName or "", line))



@pytest.fixture
def captured(request) -> Iterator[Any]:
    """Attach a Lines handler for ``conf`` to the rescue_flow logger, at debug."""
    made: list[Lines] = []
    logger = logging.getLogger("rescue_flow")
    level = logger.level

    def attach(conf: Any) -> Lines:
        made.append(Lines(conf))
        logger.addHandler(made[-1])
        logger.setLevel(logging.DEBUG)
        return made[-1]

    yield attach
    for handler in made:
        logger.removeHandler(handler)
    logger.setLevel(level)


def test_every_line_of_a_nova_rescue_names_the_request_and_the_instance(
        tmp_path, unique_name, captured) -> None:
    conf = make_conf(str(tmp_path), HOST, MEMORY, unique_name)
    _sim, (gen1, _) = seed_host(conf)
    worker = Worker(conf)
    worker.start()
    try:
        with ResultLog(conf) as results, publishing_as_nova(conf, HOST) as nova:
            lines = captured(conf)  # from here on: only this request's lines
            event_type, payload, nova_request = versioned_event(
                "instance-rescue-start.json", gen1, HOST, GEN1_IMAGE)
            nova.info(nova_context(nova_request), event_type, payload)
            result = results.wait_results(1)[0]
            assert result["payload"]["outcome"] == "success"
            # The result goes out before the flow thread's last line.
            worker.flows.scheduler.wait_idle(10)
            logging.getLogger("rescue_flow").removeHandler(lines)
    finally:
        worker.stop()
        worker.wait()
    ours = [(name, thread, line) for name, thread, line in lines.lines
            if name.startswith("rescue_flow")]
    # Nova's request id is in rescue-flow's own (nova:<id>:rescue:<uuid>), so
    # the intake's lines (Nova's id) and the worker's (ours) all show it.
    missing = [line for _, _, line in ours
               if nova_request not in line or f"[instance: {gen1}]" not in line]
    assert not missing, "lines without the request or instance:\n" + "\n".join(missing)
    logged = "\n".join(line for _, _, line in ours)
    threads = {thread.rsplit("-", 1)[0] for _, thread, _ in ours}
    assert {"intake", "flow"} <= threads, threads
    assert "Routed rescue of instance" in logged  # the Nova intake
    assert "os-win SimVMUtils.create_vm" in logged  # a Hyper-V call, at debug level
    assert f"nova:{nova_request}:rescue:{gen1}" in logged  # rescue-flow's request id


def test_a_request_handled_on_a_pool_thread_leaves_no_context_behind() -> None:
    done = threading.Event()
    seen: list[Any] = []
    here = oslo_context.get_current()

    def job() -> None:
        with logs.request_context("req-1", GEN1_UUID):
            seen.append(oslo_context.get_current().request_id)
            with logs.request_context("req-2", GEN1_UUID):
                seen.append(oslo_context.get_current().request_id)
            seen.append(oslo_context.get_current().request_id)
        seen.append(oslo_context.get_current())
        done.set()

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(5)
    assert done.is_set()
    assert seen == ["req-1", "req-2", "req-1", None]
    assert oslo_context.get_current() is here  # another thread's context stays there


def test_debug_shows_each_os_win_call_with_the_request_and_instance(
        tmp_path, capsys, restore_logging) -> None:
    site = make_site(str(tmp_path))
    site.sim.add_vm("instance-00000001", GEN1_UUID, "11111111-1111-4111-8111-111111111111",
                    nics=1)
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(
        f"[DEFAULT]\nhost = {site.conf.host}\nstate_path = {site.conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {site.conf.hyperv.instances_path}\n"
        "soft_shutdown_timeout = 1\npower_state_poll_interval = 0.01\n")
    assert os.path.exists(site.conf.simulated.state_file)

    code = cli.main(["--config-file", str(config_file), "--debug", "run", "rescue",
                     GEN1_UUID])

    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert " os-win " not in printed.out  # the log is on stderr; stdout is the command's
    calls = [line for line in printed.err.splitlines() if " os-win " in line]
    assert any("SimVMUtils.create_vm" in line for line in calls), printed.err[-3000:]
    assert all(f"[instance: {GEN1_UUID}]" in line and " cli-" in line for line in calls)


def test_without_debug_the_os_win_calls_stay_out(tmp_path, capsys, restore_logging) -> None:
    site = make_site(str(tmp_path))
    site.sim.add_vm("instance-00000001", GEN1_UUID, "11111111-1111-4111-8111-111111111111")
    config_file = tmp_path / "rescue-flow.conf"
    config_file.write_text(
        f"[DEFAULT]\nhost = {site.conf.host}\nstate_path = {site.conf.state_path}\n"
        f"[hyperv]\ndriver = simulated\ninstances_path = {site.conf.hyperv.instances_path}\n"
        "soft_shutdown_timeout = 1\npower_state_poll_interval = 0.01\n")

    assert cli.main(["--config-file", str(config_file), "run", "rescue", GEN1_UUID]) == 0

    printed = capsys.readouterr()
    assert " os-win " not in printed.out + printed.err
