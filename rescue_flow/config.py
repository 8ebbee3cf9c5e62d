"""Configuration options, per group, registered on a conf object passed in.

Nothing here is registered or read at import time: callers build a
``cfg.ConfigOpts()`` and call :func:`register_opts`. ``list_opts`` feeds
oslo-config-generator (``etc/oslo-config-generator/rescue-flow.conf``).
"""

from __future__ import annotations

import os
import socket
import sys

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
        default="$state_path/simulated-host.json",
        help="JSON file holding the simulated Hyper-V host ([hyperv] driver = "
        "simulated). Several processes may share it.",
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

_GROUPS: list[tuple[str | None, list[cfg.Opt]]] = [
    (None, DEFAULT_OPTS),
    ("hyperv", HYPERV_OPTS),
    ("simulated", SIMULATED_OPTS),
    ("retry", RETRY_OPTS),
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
