"""``rescue-flow rescue`` and ``rescue-flow unrescue``: ask a host's worker.

The request goes to the durable queue of the instance's host and waits there
for that host's worker. With ``--wait`` the command shows each step as the
worker runs it and exits with the result: 0 success or nothing to do, 1 the
flow failed (and was reverted) or was refused, 3 the instance is quarantined,
2 bad input, 4 no result in time or the broker is unreachable. ``--json``
prints only JSON on stdout: the request as queued, or with ``--wait`` the
result (the payload of the result notification); errors stay on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rescue_flow import exceptions, requests
from rescue_flow.commands.errors import EXIT_BAD_INPUT, EXIT_NO_RESULT
from rescue_flow.commands.run import exit_code, print_result, print_step
from rescue_flow.messaging import bus
from rescue_flow.messaging.client import Client, WaitTimedOut, WatchLost, new_request_id

_HOST_HELP = ("the instance's Hyper-V host, as Nova names it (default: [DEFAULT] host "
              "from the config file); the client cannot look up where an instance "
              "runs, so give it unless the instance is on that host")

_UUID_HELP = "the instance's uuid, as Nova shows it"
_EXIT_CODES = ("Exit codes: 0 queued (with --wait: done or nothing to do), 1 failed and "
               "rolled back, or refused, 2 bad input or configuration, 3 the instance "
               "is quarantined, 4 no result in time or the broker cannot be reached.")


def register(subparsers: Any) -> None:
    rescue = subparsers.add_parser(
        "rescue", help="ask the instance's host to rescue it",
        description="Queue a rescue for the worker of the instance's host; with "
        "--wait, follow it to its end.", epilog=_EXIT_CODES)
    rescue.add_argument("instance_uuid", metavar="UUID", help=_UUID_HELP)
    rescue.add_argument("--image", dest="image_id", metavar="IMAGE_ID",
                        help="cached rescue image (default: the image the instance "
                        "was booted from)")
    _common(rescue)
    rescue.set_defaults(func=rescue_command, action="rescue")

    unrescue = subparsers.add_parser(
        "unrescue", help="ask the instance's host to unrescue it",
        description="Queue an unrescue for the worker of the instance's host; with "
        "--wait, follow it to its end.", epilog=_EXIT_CODES)
    unrescue.add_argument("instance_uuid", metavar="UUID", help=_UUID_HELP)
    _common(unrescue)
    unrescue.set_defaults(func=rescue_command, action="unrescue", image_id=None)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=_HOST_HELP)
    parser.add_argument("--wait", action="store_true",
                        help="show each step as the worker runs it and exit with the "
                        "result (0 ok, 1 failed or refused, 3 quarantined, 4 no result)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="with --wait: give up waiting after S seconds (default "
                        "600); the request stays queued")
    parser.add_argument("--json", action="store_true",
                        help="print only JSON: the queued request, or with --wait the "
                        "result, without the steps")


def rescue_command(conf: Any, args: argparse.Namespace) -> int:
    prog = f"rescue-flow {args.action}"
    try:
        host = bus.check_host_name(args.host or conf.host)
        request = requests.Request(
            action=args.action, instance_uuid=args.instance_uuid, image_id=args.image_id,
            request_id=new_request_id(), host=host, source="client")
    except exceptions.InvalidRequest as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    client = Client(conf)
    try:
        if not args.wait:
            client.send(request)
            if args.json:
                print(json.dumps(dict(request.to_dict(), queued=True), indent=2,
                                 sort_keys=True), flush=True)
            else:
                print(f"queued {request.action} of {request.instance_uuid} for host "
                      f"{host} (request {request.request_id})", flush=True)
            return 0
        if not args.json:
            print(f"{request.action} {request.instance_uuid} on {host} "
                  f"(request {request.request_id}):", flush=True)
        result = client.submit(request, wait=True, timeout=args.timeout,
                               on_step=None if args.json else print_step)
    except WaitTimedOut as exc:
        print(f"{prog}: {exc}; it stays queued for host {host}: is its worker running?",
              file=sys.stderr)
        return EXIT_NO_RESULT
    except WatchLost as exc:
        print(f"{prog}: {exc}; request {request.request_id} may still run",
              file=sys.stderr)
        return EXIT_NO_RESULT
    except Exception as exc:  # the broker refused or is unreachable
        reason = " ".join(str(exc).split())
        print(f"{prog}: could not send the request: {type(exc).__name__}: {reason}; check "
              "the broker's settings ([DEFAULT] transport_url, [oslo_messaging_rabbit]) "
              "and that it runs: 'rescue-flow worker --check' tests it", file=sys.stderr)
        return EXIT_NO_RESULT
    finally:
        client.close()
    assert result is not None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True), flush=True)
        return exit_code(result)
    print_result(result, host)
    if result.failed_step:
        print(f"  failed step: {result.failed_step}", flush=True)
    return exit_code(result)
