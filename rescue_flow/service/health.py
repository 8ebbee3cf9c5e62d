"""``rescue-flow worker --check``: could the worker start here and do its job?

Each check either returns what it found or raises with what is wrong. Every
check runs, even after one failed, and prints one line; the command exits 1
if any failed, 2 if the config check did (every other command then stops
with exit 2, after :func:`config_problems`). Nothing is started and no queue is declared: the broker
checks only connect, the persistence check creates or upgrades the tables
(as the worker would at start), and the Hyper-V check makes one read.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import kombu
import oslo_messaging
import sqlalchemy as sa
from oslo_config import cfg

from rescue_flow import config, exceptions, hyperv
from rescue_flow.engine.quarantine import QuarantineList
from rescue_flow.messaging import bus
from rescue_flow.persistence.history import History

# Seconds for each connection attempt to each broker host.
CONNECT_TIMEOUT = 5.0

Check = Callable[[Any], str]


class CheckFailed(Exception):
    """What a check found wrong, in the operator's words."""


def run(conf: Any, out: Callable[[str], None] = print) -> int:
    """Run every check; print one line each; 0 when all passed, 2 when the
    configuration is not valid (as every other command exits then), else 1."""
    failed = set()
    for name, check in checks(conf):
        try:
            found = check(conf)
        except Exception as exc:
            failed.add(name)
            out(f"{name:<13} FAILED: {_reason(exc)}")
        else:
            out(f"{name:<13} ok: {found}")
    if "config" in failed:
        return 2
    return 1 if failed else 0


def checks(conf: Any) -> list[tuple[str, Check]]:
    listed: list[tuple[str, Check]] = [("config", check_config), ("broker", check_broker)]
    try:
        own_nova_broker = conf.nova.enabled and bool(conf.nova.transport_url)
    except cfg.Error:  # a bad value: the config check says which
        own_nova_broker = False
    if own_nova_broker:
        listed.append(("nova broker", check_nova_broker))
    listed += [("state folder", check_state_folder), ("persistence", check_persistence),
               ("hyperv", check_hyperv), ("metrics", check_metrics)]
    return listed


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CheckFailed):
        return text
    if isinstance(exc, cfg.Error):
        return "needs a value that is not valid (see the config line)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# The checks ----------------------------------------------------------------

def check_config(conf: Any) -> str:
    """Every option's value can be read and is in range, the host name can
    name a queue, and the URLs parse (:func:`config_problems`)."""
    found = config_problems(conf, broker=True)
    if found:
        raise CheckFailed("; ".join(found))
    files = ", ".join(conf.config_file) if conf.config_file else "no config file"
    return f"host {conf.host}, [hyperv] driver = {conf.hyperv.driver} ({files})"


def config_problems(conf: Any, broker: bool = False) -> list[str]:
    """What is wrong with the configuration, one item per option; every
    command checks this before it acts. ``broker``: for a command that
    connects to the broker, whose TLS files must then be readable too."""
    bus.register_opts(conf)
    found = config.problems(conf)
    if found:
        return found  # the values below may be the bad ones
    try:
        bus.check_host_name(conf.host)
    except exceptions.InvalidRequest as exc:
        found.append(f"[DEFAULT] host: {exc}")
    for option, url in _transport_urls(conf):
        try:
            parsed = oslo_messaging.TransportURL.parse(conf, url)
        except oslo_messaging.InvalidTransportURL as exc:
            found.append(f"{option}: {exc}")
            continue
        # oslo.messaging loads the driver named before a '+' (kombu+memory).
        driver = (parsed.transport or "").split("+")[0]
        if driver not in _transport_drivers():
            found.append(f"{option}: no transport {driver!r} (there are "
                         f"{', '.join(sorted(_transport_drivers()))})")
            continue
        try:  # TLS settings, as the broker connections will read them
            bus.kombu_ssl(conf, url, check_files=broker)
        except ValueError as exc:
            found.append(f"{option}: {exc}")
    found += _database_url_problems(conf.persistence.connection)
    return found


def _database_url_problems(connection: str) -> list[str]:
    try:
        url = sa.engine.make_url(connection)
    except sa.exc.ArgumentError:
        return ["[persistence] connection: not an SQLAlchemy URL"]
    try:
        url.get_dialect().import_dbapi()
    except sa.exc.NoSuchModuleError:
        return [f"[persistence] connection: SQLAlchemy knows no database "
                f"{url.drivername!r}"]
    except ImportError as exc:
        return [f"[persistence] connection: {url.drivername} needs the Python package "
                f"{exc.name or exc}, which is not installed here (install it into "
                "rescue-flow's environment)"]
    return []


def _transport_urls(conf: Any) -> list[tuple[str, str]]:
    urls = []
    if conf.oslo_messaging_notifications.transport_url:
        urls.append(("[oslo_messaging_notifications] transport_url",
                     conf.oslo_messaging_notifications.transport_url))
    elif conf.transport_url:
        urls.append(("[DEFAULT] transport_url", conf.transport_url))
    if conf.nova.transport_url:
        urls.append(("[nova] transport_url", conf.nova.transport_url))
    return urls


def _transport_drivers() -> set[str]:
    return {entry.name for entry in importlib.metadata.entry_points(
        group="oslo.messaging.drivers")}


def check_broker(conf: Any) -> str:
    found = _reach(bus.kombu_url(conf), bus.kombu_ssl(conf))
    if conf.nova.enabled and not conf.nova.transport_url:
        found += "; also Nova's ([nova] transport_url is unset)"
    return found


def check_nova_broker(conf: Any) -> str:
    return _reach(bus.kombu_url(conf, conf.nova.transport_url),
                  bus.kombu_ssl(conf, conf.nova.transport_url))


def _reach(urls: str, ssl: Any) -> str:
    """Connect to each host of a failover list; ok when one answers."""
    if urls.startswith("memory:"):
        return "kombu's in-process memory transport (for tests and the demo)"
    reached, failed = [], []
    for url in urls.split(";"):
        connection = kombu.Connection(url, ssl=ssl,
                                      connect_timeout=CONNECT_TIMEOUT)
        shown = connection.as_uri()  # the password masked
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            failed.append(f"{shown}: {_reason(exc)}")
        else:
            reached.append(shown)
        finally:
            connection.release()
    if not reached:
        raise CheckFailed("cannot connect to " + "; ".join(failed))
    return ", ".join(reached) + (f" (unreachable: {'; '.join(failed)})" if failed else "")


def check_state_folder(conf: Any) -> str:
    path = conf.state_path
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CheckFailed(f"[DEFAULT] state_path {path} cannot be created or written "
                          f"by this user: {exc.strerror or exc}") from exc
    return f"{path} is writable"


def check_persistence(conf: Any) -> str:
    try:
        shown = sa.engine.make_url(conf.persistence.connection).render_as_string(
            hide_password=True)
    except sa.exc.ArgumentError:
        raise CheckFailed("[persistence] connection is not an SQLAlchemy URL") from None
    try:
        history = History.from_conf(conf)  # connects, creates or upgrades the tables
        try:
            unfinished = len(history.unfinished())
            history.recent(limit=1)
            quarantined = QuarantineList(history).count()
        finally:
            history.close()
    except Exception as exc:
        raise CheckFailed(f"{shown}: {_reason(exc)}") from exc
    return (f"{shown}: tables up to date, {unfinished} unfinished request(s) of this "
            f"host, {quarantined} quarantined instance(s)")


def check_hyperv(conf: Any) -> str:
    if conf.hyperv.driver == "simulated":
        state_file = conf.simulated.state_file
        utils = hyperv.utils_for(conf)  # StateFileMissing says how to create it
        vms = utils["vmutils"].list_instances()  # loads the state file
        return f"simulated host {state_file}: {len(vms)} VM(s)"
    if sys.platform != "win32":
        raise CheckFailed("[hyperv] driver = oswin needs Windows with Hyper-V; here only "
                          "[hyperv] driver = simulated works")
    vms = hyperv.utils_for(conf)["vmutils"].list_instances()
    path = conf.hyperv.instances_path
    if not os.path.isdir(path):
        raise CheckFailed(f"[hyperv] instances_path {path} is not a folder; it must be "
                          f"nova-compute's [DEFAULT] instances_path")
    return f"os-win reached WMI: {len(vms)} VM(s); instances in {path}"


def check_metrics(conf: Any) -> str:
    if not conf.metrics.enabled:
        return "not served ([metrics] enabled = false)"
    host, port = conf.metrics.bind_host, conf.metrics.port
    if port == 0:
        return f"any free port on {host}"
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name != "nt":  # as the server binds; on Windows it means sharing the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise CheckFailed(f"cannot listen on {host} port {port}: "
                              f"{exc.strerror or exc}; is a worker already running "
                              f"here, or another service on that port?") from exc
    return f"{host} port {port} is free"
