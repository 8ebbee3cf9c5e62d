"""``rescue-flow worker``: the daemon, one per Hyper-V host.

SIGTERM or SIGINT (Ctrl-C; Ctrl-Break on Windows) stops it gracefully: it
takes no new message, lets the running flows finish (a flow is never cut in
the middle of a Hyper-V call), and leaves the requests it recorded but did
not start in the history, where the next start finds them; messages it had
not recorded yet go back to the broker. A second signal exits at once (exit
code 130); the interrupted flows then resume at the next start, as after a
crash. A stop is bounded by ``[worker] graceful_shutdown_timeout``: flows
still running then, or a broker or database that does not answer, do not
keep the process alive (exit code 124; what was interrupted resumes at the
next start). A stop while the worker is still connecting ends at once.
Exit codes: 0 stopped, 1 could not start, 124 grace time ran out, 130 second
signal.

``--check`` starts nothing: it checks the config, the brokers, the state
folder, the history database, the Hyper-V host and the metrics port, prints
one line each, and exits 1 if any failed, 2 if the config did
(:mod:`rescue_flow.service.health`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from rescue_flow.commands import errors
from rescue_flow.service import health
from rescue_flow.service.worker import Worker

LOG = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STOP_TIMEOUT = 124
EXIT_SECOND_SIGNAL = 130


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker", help="run the worker daemon for this host ([DEFAULT] host)",
        description="Take this host's requests and Nova's rescue events; run the "
        "flows. Stop with SIGTERM or Ctrl-C: the running flows finish first.",
        epilog="Exit codes: 0 stopped, 2 bad configuration, 5 a file, folder or "
        "database it needs cannot be used; with --check: 0 all ok, 1 a check "
        "failed, 2 the configuration is not valid.")
    worker.add_argument(
        "--check", action="store_true",
        help="start nothing: check the config, the broker(s), the state folder, the "
        "history database, the Hyper-V host and the metrics port; print one line "
        "each")
    worker.set_defaults(func=worker_command)


def _stop_signals() -> list[int]:
    names = ["SIGTERM", "SIGINT", "SIGBREAK"]  # SIGBREAK: Windows' Ctrl-Break
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def worker_command(conf: Any, args: argparse.Namespace) -> int:
    if args.check:
        return health.run(conf)
    try:
        # Not the history: the worker opens it in the background, waiting
        # out a database that is not up yet at boot (service/worker.py).
        errors.ready(conf, history=False)
    except Exception as exc:
        # The service's log says why it stopped, as well as stderr.
        LOG.critical("Cannot start: %s", errors.describe(exc, conf) or exc)
        raise
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            LOG.warning("Second stop signal: exiting now; interrupted requests resume "
                        "at the next start")
            _exit_now(EXIT_SECOND_SIGNAL)
        LOG.info("Stop signal %d: finishing the running flows", signum)
        stop.set()

    for signum in _stop_signals():
        signal.signal(signum, on_signal)
    starter = _Starter(conf, stop)
    starter.start()
    # A timed wait, not wait(): on Windows a blocked wait() delays signals.
    while not stop.wait(timeout=1.0):
        if starter.failed is not None:
            raise starter.failed
    code = stop_within(starter, conf.worker.graceful_shutdown_timeout)
    if code != EXIT_OK or not starter.started.is_set():
        # A thread is still blocked in a broker or database call that has no
        # timeout of its own (oslo.messaging retries its connection forever):
        # the interpreter would wait for it at exit.
        _exit_now(code)
    return code


class _Starter(threading.Thread):
    """Builds and starts the worker, which may block while the broker or the
    database does not answer; the main thread keeps taking signals."""

    def __init__(self, conf: Any, stop: threading.Event) -> None:
        super().__init__(name="start", daemon=True)
        self.conf = conf
        self.stop = stop
        self.worker: Worker | None = None
        self.started = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            self.worker = Worker(self.conf)
            if not self.stop.is_set():
                self.worker.start()
                self.started.set()
        except BaseException as exc:  # re-raised in the main thread
            self.failed = exc
            if self.stop.is_set():
                LOG.info("Start given up at a stop: %s", exc)


def stop_within(starter: _Starter, grace: float) -> int:
    """Stop the worker, giving running flows ``grace`` seconds to finish."""
    done = threading.Event()
    worker = starter.worker

    def stop_all() -> None:
        assert worker is not None
        # The flows first: a listener whose start is still blocked on the
        # broker stops only once that start returns.
        worker.flows.stop()
        running, _ = worker.running_and_waiting()
        if running:
            LOG.info("Waiting for %d running flow(s)", running)
        if starter.started.is_set():
            worker.stop()
            worker.wait()
        else:
            worker.flows.wait()
            LOG.info("Worker for host %s stopped before it was connected",
                     worker.host)
        done.set()

    if worker is None:
        LOG.info("Stopped while starting: no flow had begun")
        return EXIT_OK
    threading.Thread(target=stop_all, name="stop", daemon=True).start()
    if done.wait(grace):
        return EXIT_OK
    running, _ = worker.running_and_waiting()
    LOG.error("Not stopped within [worker] graceful_shutdown_timeout (%s s; %d flow(s) "
              "still running): exiting; interrupted requests resume at the next start",
              grace, running)
    return EXIT_STOP_TIMEOUT


def _exit_now(code: int) -> None:
    logging.shutdown()  # flush the log handlers, which os._exit would not
    os._exit(code)
