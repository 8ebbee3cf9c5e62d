"""Configuration options, per group, registered on a conf object passed in.

Nothing here is registered or read at import time: callers build a
``cfg.ConfigOpts()`` and call :func:`register_opts`. ``list_opts`` feeds
oslo-config-generator (``etc/oslo-config-generator/rescue-flow.conf``).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Sequence

from oslo_config import cfg
from oslo_log import log as logging


def _default_state_path() -> str:
    if sys.platform == "win32":
        program_data = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return os.path.join(program_data, "rescue-flow")
    return "/var/lib/rescue-flow"


DEFAULT_OPTS = [
    cfg.StrOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<hostname>",
        help="Name of this Hyper-V host as Nova knows it (nova-compute's [DEFAULT] "
        "host). The worker serves requests for instances on this host only.",
    ),
    cfg.StrOpt(
        "state_path",
        default=_default_state_path(),
        sample_default="/var/lib/rescue-flow",
        help="Folder for rescue-flow's own state: the quarantine list and, by "
        "default, the request history database.",
    ),
]

HYPERV_OPTS = [
    cfg.StrOpt(
        "driver",
        default="oswin",
        choices=[
            ("oswin", "The real Hyper-V host through os-win (Windows only)."),
            ("simulated", "A simulated host kept in [simulated] state_file."),
        ],
        help="How rescue-flow reaches Hyper-V.",
    ),
    cfg.StrOpt(
        "instances_path",
        default=r"C:\OpenStack\Instances",
        help="Nova's instances folder on this host (nova-compute's [DEFAULT] "
        "instances_path). Instance disks live in <instances_path>/<vm name>/ and "
        "cached images in <instances_path>/_base/.",
    ),
    cfg.IntOpt(
        "soft_shutdown_timeout",
        default=60,
        min=0,
        help="Seconds to wait for the guest to shut down cleanly before the VM "
        "is powered off hard. 0 powers off at once.",
    ),
    cfg.FloatOpt(
        "power_state_poll_interval",
        default=1.0,
        min=0.01,
        help="Seconds between checks of a VM's power state while waiting for a "
        "soft shutdown.",
    ),
    cfg.ListOpt(
        "vswitch_names",
        default=["external"],
        help="Virtual switches an instance's NICs may be connected to. The rescue "
        "VM's NICs join the same switch as the instance's; a NIC connected to "
        "none of these is copied unconnected, with a warning.",
    ),
]

SIMULATED_OPTS = [
    cfg.StrOpt(
        "state_file",
        default="$state_path/simulated-host.sqlite",
        help="SQLite database holding the simulated Hyper-V host ([hyperv] driver "
        "= simulated): its VMs, disks, files, faults and call log. Several "
        "processes may share it.",
    ),
]

RETRY_OPTS = [
    cfg.IntOpt(
        "attempts",
        default=4,
        min=1,
        help="Attempts for a Hyper-V call that fails transiently (WMI job failed, "
        "WMI error, file in use), counting the first.",
    ),
    cfg.IntOpt(
        "attempts_for_oswin_retried_calls",
        default=2,
        min=1,
        help="Attempts for calls that os-win already retries itself (power state "
        "changes, disk attach and detach, file removal): os-win makes up to 5 "
        "tries per attempt, so keep this low.",
    ),
    cfg.FloatOpt(
        "initial_backoff",
        default=1.0,
        min=0,
        help="Seconds to wait before the first retry; doubles on each retry.",
    ),
    cfg.FloatOpt(
        "max_backoff",
        default=10.0,
        min=0,
        help="Longest wait between two retries, in seconds.",
    ),
]

NOVA_OPTS = [
    cfg.BoolOpt(
        "enabled",
        default=True,
        help="Consume Nova's rescue and unrescue notifications in this worker. "
        "Every worker with this on joins one shared queue ([nova] pool), so each "
        "Nova event is taken by exactly one of them, whichever it is, and routed "
        "to the worker of the instance's host.",
    ),
    cfg.StrOpt(
        "transport_url",
        secret=True,
        help="Broker that carries Nova's notifications (nova's "
        "[oslo_messaging_notifications] transport_url). Unset: the same broker "
        "as rescue-flow's own messages ([oslo_messaging_notifications] "
        "transport_url, else [DEFAULT] transport_url).",
    ),
    cfg.StrOpt(
        "exchange",
        default="nova",
        help="Nova's exchange (nova's [DEFAULT] control_exchange).",
    ),
    cfg.ListOpt(
        "topics",
        default=["versioned_notifications", "notifications"],
        help="Nova's notification topics to consume: versioned_notifications "
        "carries the versioned format (nova's [notifications] "
        "versioned_notifications_topics), notifications the legacy one (nova's "
        "[oslo_messaging_notifications] topics). Nova sends the legacy, the "
        "versioned or both formats as its [notifications] notification_format "
        "says; one event may thus arrive once per format, and the worker runs "
        "it once.",
    ),
    cfg.StrOpt(
        "pool",
        default="rescue-flow",
        help="Name of the queue that rescue-flow's workers share on Nova's "
        "exchange. Every worker must use the same name: together they then get "
        "one copy of each event. A different name gets its own copy of every "
        "event, so two rescue-flow deployments on one Nova need two names.",
    ),
    cfg.BoolOpt(
        "amqp_durable_queues",
        default=False,
        help="Must equal nova's [oslo_messaging_rabbit] amqp_durable_queues: "
        "RabbitMQ refuses (PRECONDITION_FAILED) to declare Nova's exchange with a "
        "different durability. When false, like Nova's own notifications, Nova "
        "events not yet taken do not survive a broker restart; requests already "
        "routed to a host's queue do (those queues are always durable).",
    ),
    cfg.ListOpt(
        "hosts",
        default=[],
        help="Hosts that run a rescue-flow worker. Nova events for instances on "
        "other hosts are ignored. Empty: every host named in an event. Set it "
        "when Nova also runs other hypervisors: a request for a host without a "
        "worker would wait in that host's queue forever.",
    ),
]

WORKER_OPTS = [
    cfg.StrOpt(
        "exchange",
        default="rescue_flow",
        help="RabbitMQ exchange of rescue-flow's own messages: requests to the "
        "workers, and their progress and results. Declared durable, with "
        "durable queues and persistent messages, so requests survive a broker "
        "restart.",
    ),
    cfg.StrOpt(
        "requests_topic",
        default="rescue_flow_requests",
        help="Requests for host H wait in the durable queue "
        "'<requests_topic>.H.info' until H's worker takes them, however long "
        "that worker is down.",
    ),
    cfg.StrOpt(
        "results_topic",
        default="rescue_flow_results",
        help="Topic of the result notifications (rescue_flow.rescue.end|error, "
        "rescue_flow.unrescue.end|error) and of step progress "
        "(rescue_flow.step, sent only while a client waits). Like every "
        "oslo.messaging notification, they are kept in the queues "
        "'<results_topic>.info' and '<results_topic>.error' until something "
        "reads them: consume them, or cap those queues with a RabbitMQ policy.",
    ),
    cfg.IntOpt(
        "max_concurrent_flows",
        default=4,
        min=1,
        help="Flows that run at once on this host, each for a different "
        "instance. Requests for one instance always run one at a time, in the "
        "order they arrived.",
    ),
    cfg.IntOpt(
        "max_delivery_attempts",
        default=5,
        min=1,
        help="How many times a message that fails with an unexpected error (a "
        "bug, the host unreachable) is tried, counting the first, before it is "
        "answered with an error notification and dropped. Bad input is never "
        "retried: it gets its error notification at once.",
    ),
    cfg.BoolOpt(
        "notify_steps",
        default=False,
        help="Send a rescue_flow.step notification for each step of every "
        "request. Off: only for requests whose client waits (--wait).",
    ),
    cfg.IntOpt(
        "graceful_shutdown_timeout",
        default=540,
        min=1,
        help="Seconds a stop (SIGTERM, Ctrl+C, a Windows service stop) waits for "
        "the running flows to finish. When they have not, or when the broker or "
        "the history database does not answer, the worker exits anyway (exit "
        "code 124) and the interrupted flows resume from their last recorded "
        "step at the next start, as after a crash. Keep it below the service "
        "manager's own stop timeout (systemd TimeoutStopSec, WinSW stoptimeout: "
        "600 s in etc/), which kills the process when it runs out.",
    ),
    cfg.IntOpt(
        "remembered_requests",
        default=10000,
        min=0,
        help="How many messages the worker keeps a delivery count for, to apply "
        "[worker] max_delivery_attempts (at least 1000 are kept, whatever this "
        "says). Kept in memory only. A request delivered twice is recognized by "
        "its request id in the history ([persistence] connection), not here.",
    ),
]

PERSISTENCE_OPTS = [
    cfg.StrOpt(
        "connection",
        default="sqlite:///$state_path/rescue-flow.sqlite",
        secret=True,
        help="SQLAlchemy URL of the request history and flow state. The default "
        "SQLite file serves one host; a PostgreSQL or MySQL URL (e.g. "
        "postgresql+psycopg2://user:pass@db/rescue_flow) shares the history "
        "across hosts. Tables are created or upgraded at start.",
    ),
    cfg.FloatOpt(
        "storage_retry_timeout",
        default=60.0,
        min=0,
        help="Seconds a write to the history that fails on the database or its "
        "disk (SQLite locked by another process, a full disk, a PostgreSQL "
        "restart) is retried, with backoff, before the request is left "
        "unfinished: 'history storage unavailable'. Nothing is reverted or "
        "quarantined for it; the worker takes no new request until the "
        "database answers again, then finishes the request ('rescue-flow "
        "resume' does the same by hand).",
    ),
    cfg.FloatOpt(
        "sqlite_busy_timeout",
        default=30.0,
        min=0,
        help="With a SQLite history: seconds a write waits for another "
        "process's write lock before it fails with 'database is locked' (and is "
        "retried, see storage_retry_timeout).",
    ),
    cfg.IntOpt(
        "history_days",
        default=30,
        min=1,
        help="Finished requests older than this many days are purged "
        "by the worker when it starts and once a day after that. 'rescue-flow "
        "purge --older-than DAYS' purges by hand.",
    ),
]

METRICS_OPTS = [
    cfg.BoolOpt(
        "enabled",
        default=False,
        help="Serve Prometheus metrics over HTTP at "
        "http://<bind_host>:<port>/metrics while the worker runs: requests "
        "received and rejected, flows by outcome, step durations, flows in "
        "flight, queued requests, how long requests waited, quarantined "
        "instances. The endpoint has no authentication and no TLS.",
    ),
    cfg.HostAddressOpt(
        "bind_host",
        default="127.0.0.1",
        help="Address the metrics endpoint listens on. The default answers only "
        "on this host; set this host's management address (or 0.0.0.0) for a "
        "Prometheus server elsewhere, and allow only that server through the "
        "firewall.",
    ),
    cfg.PortOpt(
        "port",
        default=9797,
        help="TCP port of the metrics endpoint. Prometheus' list of exporter "
        "ports (9100-9999) has no free number left, so this is a fixed choice "
        "that stays clear of what runs on a Hyper-V compute host "
        "(windows_exporter 9182, Prometheus 9090, RabbitMQ's 15692); change it "
        "if something else here uses it ('rescue-flow worker --check' tells). "
        "0 takes any free port and logs it (for tests).",
    ),
]

_GROUPS: list[tuple[str | None, Sequence[cfg.Opt]]] = [
    (None, DEFAULT_OPTS),
    ("hyperv", HYPERV_OPTS),
    ("simulated", SIMULATED_OPTS),
    ("retry", RETRY_OPTS),
    ("nova", NOVA_OPTS),
    ("worker", WORKER_OPTS),
    ("persistence", PERSISTENCE_OPTS),
    ("metrics", METRICS_OPTS),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every rescue-flow option on ``conf``."""
    for group, opts in _GROUPS:
        conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options by group, for oslo-config-generator."""
    return [(group or "DEFAULT", list(opts)) for group, opts in _GROUPS]


def make_conf(args: list[str] | None = None, config_files: list[str] | None = None,
              overrides: dict[str, dict[str, object]] | None = None) -> cfg.ConfigOpts:
    """Build a private, fully registered conf object.

    ``overrides`` maps group name (``"DEFAULT"`` for the default group) to
    option values; tests and the demo use it instead of writing files.
    """
    conf = cfg.ConfigOpts()
    register_opts(conf)
    logging.register_options(conf)
    default_files = [] if config_files is None else config_files
    conf(args or [], project="rescue-flow", default_config_files=default_files,
         validate_default_values=True)
    for group, values in (overrides or {}).items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
    return conf


# Validation: every value read once, every problem named -----------------------

_REWORDED = [
    (re.compile(r"^invalid literal for int\(\) with base 10: (.*)$"), r"\1 is not a whole number"),
    (re.compile(r"^could not convert string to float: (.*)$"), r"\1 is not a number"),
    (re.compile(r"^Should be greater than or equal to (.*)$"), r"must be at least \1"),
    (re.compile(r"^Should be less than or equal to (.*)$"), r"must be at most \1"),
    (re.compile(r"^Valid values are \[(.*)\], but found (.*)$"), r"must be one of \1, not \2"),
]
_SOURCE = re.compile(r"detail='([^']*)'")


def _reason(exc: Exception) -> str:
    """oslo.config's complaint about one value, in the operator's words."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause if isinstance(cause, ValueError) else exc).strip()
    for pattern, replacement in _REWORDED:
        if pattern.match(text):
            return pattern.sub(replacement, text)
    return text


def problems(conf: cfg.ConfigOpts) -> list[str]:
    """Every option whose value cannot be read, as ``[group] name: why``
    (with ``(in FILE)`` when several files are read). oslo.config converts
    and range-checks a value only when it is read, so without this a bad
    value shows up (as a traceback) only when, and if, a command uses it."""
    found = []
    for group_name, opt_name in _all_options(conf):
        group = None if group_name == "DEFAULT" else group_name
        try:
            (conf if group is None else conf[group])[opt_name]
        except (ValueError, cfg.Error) as exc:
            source = _SOURCE.search(str(exc))
            several = len(conf.config_file) > 1
            where = f" (in {source.group(1)})" if source and several else ""
            found.append(f"[{group_name}] {opt_name}: {_reason(exc)}{where}")
    return found


def _all_options(conf: cfg.ConfigOpts) -> list[tuple[str, str]]:
    names = []
    for name in conf:
        try:
            value = conf[name]
        except (ValueError, cfg.Error):
            names.append(("DEFAULT", name))
            continue
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            names += [(name, option) for option in value]
        else:
            names.append(("DEFAULT", name))
    return names
