"""The ``rescue-flow`` command: one entry point, one subcommand per job.

Each command module exposes ``register(subparsers)``, which adds its parsers
and sets ``func`` to a callable ``func(conf, args) -> int``. Options common to
every command (``--config-file``, ``--debug``) are parsed here and handed to
oslo.config, so each command receives a fully registered conf object.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

# os-win and oslo import eventlet, which warns on import that it is
# deprecated; operators cannot act on that, so it must not greet every command.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402

from rescue_flow import config, logs  # noqa: E402 - after the warnings filter

# Modules that add subcommands, in the order ``--help`` lists them.
_COMMAND_MODULES = (
    "rescue_flow.commands.run",
    "rescue_flow.commands.history",
    "rescue_flow.commands.client",
    "rescue_flow.commands.worker",
    "rescue_flow.commands.demo",
    "rescue_flow.simhost.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescue-flow",
        description="Nova rescue and unrescue for Hyper-V hosts.")
    parser.add_argument("--config-file", action="append", default=[],
                        metavar="PATH", help="oslo.config file; may repeat")
    parser.add_argument("--debug", action="store_true",
                        help="log at debug level, every Hyper-V call included")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    conf_args = []
    for path in args.config_file:
        conf_args += ["--config-file", path]
    if args.debug:
        conf_args.append("--debug")
    try:
        conf = config.make_conf(conf_args)
    except cfg.Error as exc:  # a missing or unparsable file; bad values show on use
        print(f"rescue-flow: cannot load the configuration: {exc}", file=sys.stderr)
        return 2
    # The worker logs what it does; its --check prints what it found instead.
    logs.setup(conf, daemon=args.command == "worker" and not getattr(args, "check", False))
    return int(args.func(conf, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
