"""``rescue-flow worker``: the daemon, one per Hyper-V host.

SIGTERM or SIGINT (Ctrl-C; Ctrl-Break on Windows) stops it gracefully: it
takes no new message, lets the running flows finish (a flow is never cut in
the middle of a Hyper-V call), and leaves the requests it recorded but did
not start in the history, where the next start finds them; messages it had
not recorded yet go back to the broker. A second signal exits at once; the
interrupted flows then resume at the next start, as after a crash.

``--check`` starts nothing: it checks the config, the brokers, the state
folder, the history database, the Hyper-V host and the metrics port, prints
one line each, and exits 1 if any failed, 2 if the config did
(:mod:`rescue_flow.checks`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Any

from rescue_flow import checks
from rescue_flow.commands import errors
from rescue_flow.worker import Worker

LOG = logging.getLogger(__name__)

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
        return checks.run(conf)
    try:
        errors.ready(conf)
    except Exception as exc:
        # The service's log says why it stopped, as well as stderr.
        LOG.critical("Cannot start: %s", errors.describe(exc, conf) or exc)
        raise
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            LOG.warning("Second stop signal: exiting now; interrupted requests resume "
                        "at the next start")
            os._exit(EXIT_SECOND_SIGNAL)
        LOG.info("Stop signal %d: finishing the running flows", signum)
        stop.set()

    for signum in _stop_signals():
        signal.signal(signum, on_signal)
    worker = Worker(conf)
    worker.start()
    # A timed wait, not wait(): on Windows a blocked wait() delays signals.
    while not stop.wait(timeout=1.0):
        pass
    worker.stop()
    running, _ = worker.running_and_waiting()
    if running:
        LOG.info("Waiting for %d running flow(s)", running)
    worker.wait()
    return 0
