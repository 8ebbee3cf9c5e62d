"""The ``rescue-flow`` command: one entry point, one subcommand per job.

Each command module exposes ``register(subparsers)``, which adds its parsers
and sets ``func`` to a callable ``func(conf, args) -> int``. Options common to
every command (``--config-file``, ``--debug``, before or after the command)
are parsed here and handed to oslo.config, and every value is checked
(:func:`rescue_flow.service.health.config_problems`) before the command runs, so each
command receives a fully registered, valid conf object. Whatever goes wrong
ends through :mod:`rescue_flow.commands.errors`: one line and an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

# os-win and oslo import eventlet, which warns on import that it is
# deprecated; operators cannot act on that, so it must not greet every command.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

from rescue_flow import config  # noqa: E402 - after the warnings filter
from rescue_flow.commands import errors  # noqa: E402
from rescue_flow.engine import logs  # noqa: E402
from rescue_flow.service import health  # noqa: E402

# Modules that add subcommands, in the order ``--help`` lists them.
_COMMAND_MODULES = (
    "rescue_flow.commands.run",
    "rescue_flow.commands.history",
    "rescue_flow.commands.client",
    "rescue_flow.commands.worker",
    "rescue_flow.commands.demo",
    "rescue_flow.simhost.cli",
)


_CONFIG_HELP = ("configuration file (start from etc/rescue-flow.conf.sample); may be "
                "given more than once, later files win")
_DEBUG_HELP = "log at debug level, every Hyper-V call included; show tracebacks"
# Commands that need no configuration, so no word about defaults either.
_NO_CONFIG_NEEDED = ("demo",)
# The commands that connect to the broker: only they check its TLS files.
_BROKER_COMMANDS = ("rescue", "unrescue", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescue-flow",
        description="Nova rescue and unrescue for Hyper-V hosts. --config-file and "
        "--debug may come before or after the command.")
    parser.add_argument("--config-file", action="append", default=[],
                        metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    _accept_global_options(parser, depth=1)
    return parser


def _accept_global_options(parser: argparse.ArgumentParser, depth: int) -> None:
    """Let every command (and sim's subcommands) take the global options too.

    argparse copies a subcommand's values over the main parser's, so each
    level keeps them under its own names (unset unless given), and
    :func:`_global_options` joins them.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in set(action.choices.values()):
            options = sub.add_argument_group("global options")
            options.add_argument("--config-file", action="append", metavar="PATH",
                                 dest=f"config_file_{depth}", default=argparse.SUPPRESS,
                                 help=_CONFIG_HELP)
            options.add_argument("--debug", action="store_true", dest=f"debug_{depth}",
                                 default=argparse.SUPPRESS, help=_DEBUG_HELP)
            _accept_global_options(sub, depth + 1)


def _global_options(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The config files in the order given, and whether --debug was, wherever
    on the command line they were."""
    files, debug = list(args.config_file), bool(args.debug)
    for depth in range(1, 4):  # rescue-flow COMMAND SUBCOMMAND is the deepest
        files += getattr(args, f"config_file_{depth}", [])
        debug = debug or getattr(args, f"debug_{depth}", False)
    return files, debug


def _command_name(args: argparse.Namespace) -> str:
    words = ["rescue-flow", args.command]
    if getattr(args, "sim_command", None):
        words.append(args.sim_command)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    files, debug = _global_options(args)
    command = _command_name(args)
    conf_args = []
    for path in files:
        conf_args += ["--config-file", path]
    if debug:
        conf_args.append("--debug")
    conf = None
    try:
        conf = _load_conf(conf_args)
        checking = args.command == "worker" and getattr(args, "check", False)
        if not checking:  # --check names every problem among its own lines
            problems = health.config_problems(conf,
                                              broker=args.command in _BROKER_COMMANDS)
            if problems:
                where = f" in {', '.join(files)}" if files else ""
                raise errors.ConfigInvalid(
                    f"the configuration{where} is not valid: {'; '.join(problems)}; "
                    "the sample config (etc/rescue-flow.conf.sample) says what each "
                    "option takes")
        if not files and args.command not in _NO_CONFIG_NEEDED:
            print(f"{command}: no --config-file given: using the defaults: "
                  f"[DEFAULT] host = {conf.host}, [DEFAULT] state_path = "
                  f"{conf.state_path}, [hyperv] driver = {conf.hyperv.driver}",
                  file=sys.stderr, flush=True)
        # The worker logs what it does; its --check prints what it found instead.
        logs.setup(conf, daemon=args.command == "worker" and not checking)
        return int(args.func(conf, args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr, flush=True)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:
        return errors.report(command, exc, conf, debug=debug)


def _load_conf(conf_args: list[str]) -> Any:
    """config.make_conf, but a value oslo.config refuses while it parses (an
    option that is also a command-line option, like debug) is one line too:
    oslo.config prints argparse's complaint and exits, so catch both."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            conf = config.make_conf(conf_args)
    except SystemExit:
        text = " ".join(said.getvalue().split())
        option = re.match(r"^argument --([\w-]+): (.*)$", text)
        if option:
            text = f"[DEFAULT] {option.group(1).replace('-', '_')}: {option.group(2)}"
        raise errors.ConfigInvalid(f"cannot load the configuration: {text}") from None
    sys.stderr.write(said.getvalue())  # whatever else it had to say
    return conf

if __name__ == "__main__":
    sys.exit(main())
