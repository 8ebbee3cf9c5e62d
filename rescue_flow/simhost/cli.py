"""``rescue-flow sim``: set up, inspect and break the simulated Hyper-V host.

Every subcommand works on ``[simulated] state_file``; ``init`` also reads
``[hyperv] instances_path`` and ``[hyperv] vswitch_names``. Faults and
latencies set here are stored in the state file, so a worker process using
the same file sees them on its next call.

Exit codes: 0 done, 2 bad input (unknown method, image, VM...), 1 an os-win
error, 5 the state file is missing or cannot be read whole.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from rescue_flow.commands import errors
from rescue_flow.simhost import faults
from rescue_flow.simhost.host import SimulatedHost, offered_methods
from rescue_flow.simhost.oswin import exceptions as oswin_exceptions

Handler = Callable[[cfg.ConfigOpts, argparse.Namespace], int]


def _guarded(handler: Handler) -> Handler:
    def run(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
        try:
            return handler(conf, args)
        except Exception as exc:
            if errors.describe(exc, conf) is not None:
                raise  # the state file or its folder: the CLI's one error path
            if isinstance(exc, ValueError):
                return _fail(args, str(exc), errors.EXIT_BAD_INPUT)
            if isinstance(exc, (OSError, oswin_exceptions.OSWinException)):
                return _fail(args, str(exc), errors.EXIT_FAILED)
            raise
    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    print(f"rescue-flow sim {args.sim_command}: {message}", file=sys.stderr)
    return code


def _host(conf: cfg.ConfigOpts) -> SimulatedHost:
    return SimulatedHost(conf.simulated.state_file)


def _init(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    state_file = conf.simulated.state_file
    os.makedirs(os.path.dirname(os.path.abspath(state_file)), exist_ok=True)
    switches = list(conf.hyperv.vswitch_names)
    SimulatedHost.init(state_file, conf.hyperv.instances_path, switches)
    print(f"simulated host initialised in {state_file} (instances path "
          f"{conf.hyperv.instances_path}, switches: {', '.join(switches) or 'none'})")
    return 0


def _add_image(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    path = _host(conf).add_image(args.image_id, args.generation, args.format)
    print(path)
    return 0


def _add_vm(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    _host(conf).add_vm(
        args.name, args.uuid, args.image, generation=args.generation,
        stopped=args.stopped, boot_from_volume=args.boot_from_volume, nics=args.nics,
        memory_mb=args.memory_mb, vcpus=args.vcpus, config_drive=args.config_drive,
        soft_shutdown=args.soft_shutdown, checkpoints=args.checkpoints,
        secure_boot=args.secure_boot)
    print(f"VM {args.name} added")
    return 0


def _show(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    host = _host(conf)
    sys.stdout.write(host.view_json() if args.json else host.view_text())
    return 0


def _format_call(index: int, call: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in call["args"].items())
    return f"{index:>4}  {call['method']}({args})"


def _calls(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    calls = _host(conf).calls()
    if args.json:
        sys.stdout.write(json.dumps(calls, indent=2) + "\n")
    else:
        for index, call in enumerate(calls, 1):
            print(_format_call(index, call))
    return 0


def _clear_calls(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    _host(conf).clear_calls()
    return 0


def _fault(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    _host(conf).set_fault(args.method, args.mode, after=args.after, times=args.times)
    times = "every call" if args.times is None else f"{args.times} call(s)"
    print(f"{args.method}: {args.mode} fault on {times} after {args.after} "
          f"successful call(s)")
    return 0


def _latency(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    _host(conf).set_latency(args.method, args.seconds)
    return 0


def _profile(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    host = _host(conf)
    host.set_cost_profile(None if args.profile == "off" else args.profile, args.scale)
    shown = host.cost_profile()
    print("no cost profile: calls cost only their 'sim latency'" if shown is None
          else f"cost profile {shown['name']} x {shown['scale']:g}")
    return 0


def _clear_faults(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    _host(conf).clear_faults()
    return 0


def _method(value: str) -> str:
    """Argparse type for a method name: refuse what the host does not offer."""
    try:
        faults.check_method(value, offered_methods())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return number


def register(subparsers: Any) -> None:
    """Add ``sim`` and its subcommands to the ``rescue-flow`` parser."""
    sim = subparsers.add_parser(
        "sim", help="set up, inspect and break the simulated Hyper-V host",
        description="Set up, inspect and break the simulated Hyper-V host that "
        "rescue-flow drives with [hyperv] driver = simulated. Every subcommand works "
        "on the file [simulated] state_file; init also reads [hyperv] instances_path "
        "and [hyperv] vswitch_names. Faults and latencies set here are kept in that "
        "file, so a worker using it sees them on its next call.",
        epilog="Exit codes: 0 done, 1 a Hyper-V call failed, 2 bad input or "
        "configuration (an unknown method, image or VM), 5 the state file is missing "
        "or cannot be read whole.")
    sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sub.required = True

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(func=_guarded(handler))
        return parser

    command("init", _init, "create a fresh, empty host (overwrites the state file)")

    p = command("add-image", _add_image, "put an image in the host's image cache")
    p.add_argument("image_id", metavar="IMAGE_ID", help="the image's id, as Glance names it")
    p.add_argument("--generation", type=int, choices=(1, 2), required=True,
                   help="the VM generation the image boots")
    p.add_argument("--format", choices=("vhd", "vhdx"), required=True,
                   help="the disk format (Gen2 needs vhdx)")

    p = command("add-vm", _add_vm, "add an instance VM as Nova would have made it")
    p.add_argument("name", metavar="NAME", help="VM name, e.g. instance-0000002a")
    p.add_argument("--uuid", required=True, help="instance uuid (kept in the notes)")
    p.add_argument("--image", required=True, metavar="IMAGE_ID",
                   help="the cached image the instance was booted from (add-image)")
    p.add_argument("--generation", type=int, choices=(1, 2),
                   help="default: the image's generation")
    p.add_argument("--stopped", action="store_true", help="leave the VM off")
    p.add_argument("--boot-from-volume", action="store_true",
                   help="root on a passthrough volume instead of root.vhd(x)")
    p.add_argument("--nics", type=_count, default=0, metavar="N",
                   help="network adapters on the first virtual switch (default 0)")
    p.add_argument("--memory-mb", type=int, default=1024, metavar="MB",
                   help="memory (default 1024)")
    p.add_argument("--vcpus", type=int, default=1, metavar="N",
                   help="virtual processors (default 1)")
    p.add_argument("--config-drive", action="store_true",
                   help="give it a config drive disk, as Nova's config drive")
    p.add_argument("--soft-shutdown", choices=("clean", "hang"), default="clean",
                   help="how the guest answers a soft shutdown request")
    p.add_argument("--checkpoints", type=_count, default=0, metavar="N",
                   help="checkpoints the VM has (it runs on an .avhd(x) chain)")
    p.add_argument("--secure-boot", choices=("windows", "linux"), default=None,
                   help="Gen2: Secure Boot on, with the Windows or the Microsoft "
                   "UEFI CA (Linux) template")

    p = command("show", _show, "show VMs, disks, NICs, files and images")
    p.add_argument("--json", action="store_true", help="the canonical JSON view")

    p = command("calls", _calls, "list the os-win calls made so far")
    p.add_argument("--json", action="store_true", help="print the calls as JSON")

    command("clear-calls", _clear_calls, "empty the call log")

    p = command("fault", _fault, "make calls of an os-win method fail")
    p.add_argument("method", metavar="METHOD", type=_method,
                   help="the os-win method, e.g. attach_drive")
    p.add_argument("--mode", choices=faults.MODES, required=True,
                   help="permanent or transient: the call fails (transient ones "
                   "are retried); crash-before or crash-after: the calling process "
                   "ends before or after the call takes effect; lost-answer: the "
                   "call takes effect, then fails as a transient one")
    p.add_argument("--after", type=_count, default=0, metavar="N",
                   help="calls that still succeed first (default 0)")
    p.add_argument("--times", type=_count, default=None, metavar="N",
                   help="calls that fail (default: every later call)")

    p = command("latency", _latency, "make each call of an os-win method slower")
    p.add_argument("method", metavar="METHOD", type=_method,
                   help="the os-win method, e.g. attach_drive")
    p.add_argument("seconds", metavar="SECONDS", type=float,
                   help="added to each call")

    p = command("profile", _profile,
                "make every call cost what a WMI cost profile says ('sim latency' "
                "still overrides one method)")
    p.add_argument("profile", metavar="PROFILE",
                   help="'wmi' (the documented default figures), a JSON file, or 'off'")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every cost (default 1)")

    command("clear-faults", _clear_faults, "remove every fault and latency")
