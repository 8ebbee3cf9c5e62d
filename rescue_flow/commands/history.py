"""``rescue-flow status`` and ``rescue-flow purge``: read and trim the history."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from rescue_flow import exceptions, requests
from rescue_flow.engine import states
from rescue_flow.persistence import schema
from rescue_flow.persistence.history import History, RequestRecord


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="recent requests, their outcome and each step's state",
        description="Show the most recent requests in the history, newest first, "
        "each with its outcome (or its state while it runs), its reason, the "
        "instance's state after it (or while its flow runs) and every step's state.")
    status.add_argument("instance_uuid", nargs="?", metavar="UUID",
                        help="only the requests for this instance")
    status.add_argument("--limit", type=_at_least_one, default=20, metavar="N",
                        help="show at most N requests (default 20)")
    status.add_argument("--json", action="store_true",
                        help="print the requests as JSON, for scripts")
    status.set_defaults(func=status_command)

    purge = subparsers.add_parser(
        "purge", help="forget finished requests older than N days",
        description="Delete finished requests from the history: those older than "
        "--older-than days, or with --all every one. Requests still running or "
        "waiting are kept. The worker purges by itself after [persistence] "
        "history_days.")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--older-than", type=_days, metavar="DAYS",
                       help="forget requests that finished more than DAYS days "
                       "ago (more than 0; fractions allowed)")
    which.add_argument("--all", action="store_true",
                       help="forget every finished request")
    purge.set_defaults(func=purge_command)


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return number


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if not days > 0 or days == float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be more than 0, not {value} (to forget every finished request, "
            "use --all)")
    return days


def _instance_state(history: History, record: RequestRecord) -> str | None:
    """The instance's state in the state machine: where the request left it
    (recorded with its end), or the state its flow runs in; None while it
    waits, or for a request recorded before states were."""
    if record.result is not None:
        return (record.result or {}).get("instance_state")
    if record.state != schema.RUNNING:
        return None
    last = history.last_flow(record)
    return states.FLOW_STATES.get(last[1].meta.get("kind")) if last else None


def _describe(history: History, record: RequestRecord) -> dict[str, Any]:
    durations = (record.result or {}).get("step_durations", {})
    return {
        "request_id": record.request.request_id,
        "action": record.request.action,
        "instance_uuid": record.request.instance_uuid,
        "source": record.request.source,
        "nova_request_id": record.request.nova_request_id,
        "state": record.state,
        "instance_state": _instance_state(history, record),
        "outcome": record.outcome,
        "reason": (record.result or {}).get("reason"),
        "received_at": record.received_at.isoformat() + "Z",
        "finished_at": record.finished_at.isoformat() + "Z" if record.finished_at else None,
        "steps": [{"flow": flow, "step": step, "state": state,
                   "seconds": durations.get(step)}
                  for flow, step, state in history.steps(record)],
    }


def status_command(conf: Any, args: argparse.Namespace) -> int:
    instance_uuid = None
    if args.instance_uuid:
        try:
            instance_uuid = requests.canonical_uuid(args.instance_uuid, "instance uuid")
        except exceptions.InvalidRequest as exc:
            print(f"rescue-flow status: {exc}", file=sys.stderr)
            return 2
    history = History.from_conf(conf)
    described = [_describe(history, record)
                 for record in history.recent(instance_uuid, limit=args.limit)]
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
        return 0
    if not described:
        print("no requests recorded")
    for item in described:
        outcome = item["outcome"] or item["state"]
        print(f"{item['received_at']}  {item['action']:<8} {item['instance_uuid']}  "
              f"{outcome}  ({item['source']}, {item['request_id']})")
        if item["reason"]:
            print(f"    {item['reason']}")
        if item["instance_state"]:
            print(f"    instance: {item['instance_state']}")
        for step in item["steps"]:
            took = f"  {step['seconds']:.2f}s" if step["seconds"] is not None else ""
            print(f"    {step['flow']:<9} {step['step']:<28} {step['state']}{took}")
    return 0


def purge_command(conf: Any, args: argparse.Namespace) -> int:
    history = History.from_conf(conf)
    if args.all:
        purged = history.purge(datetime.timedelta(0))
        print(f"purged {purged} finished request(s)")
    else:
        purged = history.purge(datetime.timedelta(days=args.older_than))
        print(f"purged {purged} finished request(s) older than {args.older_than:g} days")
    return 0
