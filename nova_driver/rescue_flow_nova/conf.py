"""nova.conf options of the rescue-flow driver, group ``[rescue_flow]``.

Registered on the conf object passed in (nova's ``nova.conf.CONF`` in
nova-compute); ``list_opts`` feeds oslo-config-generator (entry point
``oslo.config.opts = rescue_flow_nova``). The exchange and topic names must
equal the worker's ``[worker]`` options of the same names.
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg

GROUP = "rescue_flow"

OPTS = [
    cfg.StrOpt(
        "transport_url",
        secret=True,
        help="Broker of the host's rescue-flow worker, as an oslo.messaging URL "
        "(rabbit://user:pass@host:5672/vhost). Unset: nova-compute's own "
        "[DEFAULT] transport_url. TLS as for nova-compute's own transport: "
        "[oslo_messaging_rabbit] ssl, ssl_ca_file, ssl_cert_file, ssl_key_file "
        "and ssl_version, or the same names in the URL's query "
        "(rabbit://user:pass@host:5671/?ssl=1).",
    ),
    cfg.StrOpt(
        "exchange",
        default="rescue_flow",
        help="Exchange of rescue-flow's messages: the worker's [worker] exchange.",
    ),
    cfg.StrOpt(
        "requests_topic",
        default="rescue_flow_requests",
        help="Topic of the requests to the workers: the worker's [worker] "
        "requests_topic. This host's requests go to the queue "
        "'<requests_topic>.<host>.info'.",
    ),
    cfg.StrOpt(
        "results_topic",
        default="rescue_flow_results",
        help="Topic of the workers' results: the worker's [worker] results_topic.",
    ),
    cfg.IntOpt(
        "timeout",
        default=900,
        min=60,
        help="Seconds a rescue or unrescue may take, from Nova's call to the "
        "worker's result. The worker starts no step after "
        "timeout - revert_allowance seconds: it reverts and reports instead, "
        "so Nova and the host never disagree. Must leave room for the clean "
        "shutdown of the instance (nova's [DEFAULT] shutdown_timeout).",
    ),
    cfg.IntOpt(
        "revert_allowance",
        default=180,
        min=10,
        help="Seconds of [rescue_flow] timeout kept for the worker to revert "
        "(or finish an unrescue's clean-up) and report after its deadline.",
    ),
    cfg.IntOpt(
        "start_timeout",
        default=60,
        min=5,
        help="Seconds the worker has to start a request. A request it has not "
        "started by then (the worker down, or busy beyond this) is never run: "
        "the worker refuses it untouched, and Nova shows the failure.",
    ),
    cfg.IntOpt(
        "announce_valid_for",
        default=3600,
        min=60,
        help="Seconds for which the driver's announcement to the worker holds "
        "(the worker then leaves Nova's notifications to the driver). The "
        "driver announces itself when nova-compute starts and again after a "
        "third of this, so a removed driver is forgotten this long after.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(OPTS, group=GROUP)


def timing_error(group: Any) -> str | None:
    """Why ``[rescue_flow]``'s times leave the worker no time to work, or None.

    Each option is valid alone (oslo.config checks its minimum); together
    they must leave the worker time to start the request and run its steps
    before its deadline (timeout - revert_allowance), else every request is
    reverted or refused at once with a reason that does not name the option.
    """
    working = group.timeout - group.revert_allowance
    if working <= 0:
        return (f"[rescue_flow] revert_allowance ({group.revert_allowance}s) must be less "
                f"than [rescue_flow] timeout ({group.timeout}s): the worker would have no "
                "time to run a step")
    if group.start_timeout >= working:
        return (f"[rescue_flow] start_timeout ({group.start_timeout}s) must be less than "
                f"timeout - revert_allowance ({working}s): a request started that late "
                "would be past its deadline at once")
    return None


def shutdown_warning(group: Any, shutdown_timeout: int) -> str | None:
    """A warning when Nova's clean shutdown may use up the worker's time."""
    working = group.timeout - group.revert_allowance
    if 0 < working <= shutdown_timeout:
        return (f"[rescue_flow] timeout - revert_allowance ({working}s) is not more than "
                f"[DEFAULT] shutdown_timeout ({shutdown_timeout}s): a guest that takes "
                "its full shutdown time would make the rescue revert at its deadline")
    return None


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, list(OPTS))]
