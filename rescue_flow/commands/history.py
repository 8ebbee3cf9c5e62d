"""``rescue-flow status`` and ``rescue-flow purge``: read and trim the history."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

from rescue_flow import exceptions, requests
from rescue_flow.persistence.history import History, RequestRecord


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="recent requests, their outcome and each step's state")
    status.add_argument("instance_uuid", nargs="?")
    status.add_argument("--limit", type=int, default=20)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=status_command)

    purge = subparsers.add_parser("purge", help="forget finished requests older than N days")
    purge.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    purge.set_defaults(func=purge_command)


def _describe(history: History, record: RequestRecord) -> dict[str, Any]:
    durations = (record.result or {}).get("step_durations", {})
    return {
        "request_id": record.request.request_id,
        "action": record.request.action,
        "instance_uuid": record.request.instance_uuid,
        "source": record.request.source,
        "nova_request_id": record.request.nova_request_id,
        "state": record.state,
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
        for step in item["steps"]:
            took = f"  {step['seconds']:.2f}s" if step["seconds"] is not None else ""
            print(f"    {step['flow']:<9} {step['step']:<28} {step['state']}{took}")
    return 0


def purge_command(conf: Any, args: argparse.Namespace) -> int:
    purged = History.from_conf(conf).purge(datetime.timedelta(days=args.older_than))
    print(f"purged {purged} finished request(s) older than {args.older_than:g} days")
    return 0
