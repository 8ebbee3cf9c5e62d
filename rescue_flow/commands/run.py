"""``rescue-flow run``, ``resume`` and ``reset``: act on this host, in this process.

``run`` handles one request in the foreground, against the configured host,
printing each step as it runs and reverts; like every request, it is recorded
in the history first. ``resume`` finishes what a crash interrupted. Exit
codes: 0 success or nothing to do, 1 the flow failed and was reverted (or was
refused, or failed outside its flow: that is its recorded end too), 3 the
instance is quarantined, 2 bad input, 5 history storage unavailable (the
request is left unfinished: ``rescue-flow resume`` finishes it once the
database answers).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from rescue_flow import exceptions, requests
from rescue_flow.commands import errors
from rescue_flow.commands.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_QUARANTINED,
)
from rescue_flow.engine.progress import StepEvent
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.engine.runner import FlowRunner
from rescue_flow.outcome import Outcome, Result

_UUID_HELP = "the instance's uuid, as Nova shows it"
_EXIT_CODES = ("Exit codes: 0 done or nothing to do, 1 failed and rolled back, or refused, "
               "2 bad input or configuration, 3 the instance is quarantined, 5 a file, "
               "folder or database it needs cannot be used.")


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="rescue or unrescue an instance on this host, in the foreground",
        description="Rescue or unrescue an instance of this host in this process, "
        "without the broker or the worker, printing each step as it runs (and, on a "
        "failure, as it is rolled back). The request is recorded in the history "
        "like the worker's.", epilog=_EXIT_CODES)
    run.add_argument("action", choices=requests.ACTIONS, help="rescue or unrescue")
    run.add_argument("instance_uuid", metavar="UUID", help=_UUID_HELP)
    run.add_argument("--image", dest="image_id", metavar="IMAGE_ID",
                     help="cached rescue image (rescue only); default: the image the "
                     "instance was booted from")
    run.add_argument("--image-generation", type=int, choices=(1, 2),
                     help="the rescue image's VM generation, if known")
    run.set_defaults(func=run_command)

    resume = subparsers.add_parser(
        "resume", help="finish, in the foreground, every request of this host that a "
        "crash interrupted (the worker does this at start)",
        description="Finish, in this process, every request of this host that was "
        "recorded and never finished (a killed worker or run): each resumes from its "
        "last recorded step. The worker does the same when it starts.",
        epilog=_EXIT_CODES)
    resume.set_defaults(func=resume_command)

    quarantined = subparsers.add_parser(
        "quarantined", help="list the instances a failed revert left for an operator",
        description="List the instances on the quarantine list: a step failed, then "
        "rolling back failed too, so rescue-flow refuses every request for them until "
        "an operator has looked at the host and run 'rescue-flow reset UUID'.")
    quarantined.add_argument("--json", action="store_true",
                             help="print the list as JSON, for scripts")
    quarantined.set_defaults(func=quarantined_command)

    reset = subparsers.add_parser(
        "reset", help="take an instance off the quarantine list, once you have "
        "checked its host",
        description="Take an instance off the quarantine list. It checks and changes "
        "nothing on the host: look at the host first (docs/troubleshooting.md, "
        "Quarantine). The next request for the instance reads the host again and "
        "cleans up what a failed rollback left.")
    reset.add_argument("instance_uuid", metavar="UUID", help=_UUID_HELP)
    reset.set_defaults(func=reset_command)


def print_step(event: StepEvent) -> None:
    took = f" ({event.seconds:.2f}s)" if event.seconds is not None else ""
    print(f"  {event.step}: {event.state}{took}", flush=True)


def print_result(result: Result, host: str | None = None) -> None:
    """The outcome in one line; for a failure, where its details are (the
    history of ``host``'s worker, when that is another host)."""
    line = f"{result.action} {result.instance_uuid}: {result.outcome.value}"
    if result.reason:
        line += f": {result.reason}"
    print(line, flush=True)
    if result.reverted_steps:
        print(f"  reverted: {', '.join(result.reverted_steps)}", flush=True)
    if not result.outcome.ok:
        where = f" (the history of {host}'s worker)" if host else ""
        print(f"  details: rescue-flow status {result.instance_uuid}{where}", flush=True)


def exit_code(result: Result) -> int:
    if result.outcome.ok:
        return EXIT_OK
    if result.outcome is Outcome.QUARANTINED:
        return EXIT_QUARANTINED
    return EXIT_FAILED


def run_command(conf: Any, args: argparse.Namespace) -> int:
    try:
        request = requests.Request(
            action=args.action, instance_uuid=args.instance_uuid,
            image_id=args.image_id, image_generation=args.image_generation,
            request_id=f"cli-{uuid.uuid4()}", host=conf.host, source="cli")
    except exceptions.InvalidRequest as exc:
        print(f"rescue-flow run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    errors.ready(conf)
    runner = FlowRunner.durable(conf)
    print(f"{request.action} {request.instance_uuid} on {conf.host}:", flush=True)
    try:
        result = runner.handle(request, on_step=print_step)
    except exceptions.StorageUnavailable as exc:
        return _left_for_resume(request, exc)
    print_result(result)
    return exit_code(result)


def _left_for_resume(request: requests.Request, exc: exceptions.StorageUnavailable) -> int:
    if exc.recorded:
        then = (f"the request ({request.request_id}) is left unfinished: run "
                "'rescue-flow resume' once the database answers")
    else:
        then = "the request was not recorded and nothing was done; try again later"
    print(f"{request.action} {request.instance_uuid}: {exc}; {then}", flush=True)
    return EXIT_ENVIRONMENT  # the history storage is the environment that failed


def resume_command(conf: Any, args: argparse.Namespace) -> int:
    errors.ready(conf)
    runner = FlowRunner.durable(conf)
    assert runner.history is not None
    unfinished = runner.history.unfinished()
    print(f"{len(unfinished)} unfinished request(s) on {conf.host}", flush=True)
    worst = EXIT_OK
    for record in unfinished:
        request = record.request
        print(f"{request.action} {request.instance_uuid} (request {request.request_id}):",
              flush=True)
        try:
            result = runner.resume(record, on_step=print_step)
        except exceptions.StorageUnavailable as exc:
            return _left_for_resume(request, exc)
        print_result(result)
        worst = max(worst, exit_code(result))
    return worst


def quarantined_command(conf: Any, args: argparse.Namespace) -> int:
    entries = QuarantineList.from_conf(conf).all()  # in the history database
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return EXIT_OK
    if not entries:
        print("no instance is quarantined")
    for instance_uuid, entry in sorted(entries.items()):
        print(f"{instance_uuid}  on {entry['host']}  since {entry['since']}  "
              f"(request {entry['request_id']})")
        print(f"    {entry['reason']}")
    return EXIT_OK


def reset_command(conf: Any, args: argparse.Namespace) -> int:
    try:
        instance_uuid = requests.canonical_uuid(args.instance_uuid, "instance uuid")
    except exceptions.InvalidRequest as exc:
        print(f"rescue-flow reset: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if QuarantineList.from_conf(conf).remove(instance_uuid):
        print(f"{instance_uuid} is out of quarantine")
    else:
        print(f"{instance_uuid} was not quarantined")
    return EXIT_OK
