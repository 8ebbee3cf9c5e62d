"""``rescue-flow demo``: rescue, unrescue and a rolled-back failure, in one process.

Needs nothing: a simulated Hyper-V host in a temporary folder and an
in-memory broker. Exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from rescue_flow.commands import demo_loop


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="show the whole loop on a simulated host, no setup needed",
        description="Seed a simulated Hyper-V host, publish Nova's rescue and unrescue "
        "notifications on an in-memory broker, run them, then inject a failure and "
        "show the rollback. Needs no config file and changes nothing outside its "
        "temporary folder.", epilog="Exit codes: 0 every check passed, 1 one did not.")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the simulated host in DIR instead of a temporary folder")
    parser.set_defaults(func=demo_command)


def demo_command(conf: Any, args: argparse.Namespace) -> int:
    # The demo prints what matters; the worker's log lines go only to --debug.
    logging.basicConfig(level=logging.DEBUG if conf.debug else logging.CRITICAL,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    return demo_loop.run(folder=args.keep)
