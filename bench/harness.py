"""What every benchmark shares: simulated sites, interleaved timing, statistics,
the broker, and a description of the machine.

Rules the benchmarks follow (docs/benchmarks.md says why):

- a baseline and its subject run in the same process and the same run,
  interleaved round by round (the order rotates), so a noisy neighbour on
  a 2-core machine slows both alike;
- figures are medians and tails (p95, p99) of many rounds, never one run;
- a verdict is a ratio against that baseline, never an absolute time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

from rescue_flow import config
from rescue_flow.messaging import bus
from rescue_flow.simhost import SimulatedHost

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "11111111-1111-4111-8111-111111111111"
RABBIT_URL_ENV = "RESCUE_FLOW_RABBIT_URL"
DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


@dataclasses.dataclass
class Context:
    """What a benchmark gets from the runner."""

    quick: bool
    workdir: str
    rabbit_url: str | None  # None: no broker answered
    rabbit_error: str = ""
    # B3 also runs its four workers in one process (a slow extra, for the record).
    full_b3_in_process: bool = False

    def folder(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- statistics -----------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(seconds: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """n, median, p95, p99, min and max, in milliseconds unless told."""
    return {"n": len(seconds),
            "median": round(statistics.median(seconds) * scale, 3),
            "p95": round(percentile(seconds, 95) * scale, 3),
            "p99": round(percentile(seconds, 99) * scale, 3),
            "min": round(min(seconds) * scale, 3),
            "max": round(max(seconds) * scale, 3)}


def interleave(variants: dict[str, Callable[[], Any]], rounds: int,
               warmup: int = 2) -> dict[str, list[float]]:
    """Run each variant once per round, in an order that rotates, and time it."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.perf_counter()
            variants[name]()
            elapsed = time.perf_counter() - began
            if index >= warmup:
                times[name].append(elapsed)
    return times


def verdict(ratio: float | None, goal: float, direction: str = "<=") -> bool | None:
    if ratio is None or math.isnan(ratio):
        return None
    return ratio <= goal if direction == "<=" else ratio >= goal


def skipped(reason: str, goal: str) -> dict[str, Any]:
    return {"skipped": reason, "ratio": None, "goal": goal, "met": None}


# -- simulated sites ------------------------------------------------------------

def make_conf(folder: str, host: str = "hv-bench", url: str | None = None,
              names: str | None = None, **groups: dict[str, Any]) -> Any:
    """A worker's conf: simulated host in ``folder``, history in its state folder,
    and (with ``names``) exchanges, topics and pools of its own on the broker."""
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"host": host, "state_path": os.path.join(folder, "state")},
        "hyperv": {"driver": "simulated", "instances_path": os.path.join(folder, "vms"),
                   "soft_shutdown_timeout": 60, "power_state_poll_interval": 0.01},
        "retry": {"initial_backoff": 0.0, "max_backoff": 0.0},
        "worker": {"max_concurrent_flows": 4},
    }
    if names is not None:
        overrides["worker"].update(exchange=f"{names}-x", requests_topic=f"{names}-requests",
                                   results_topic=f"{names}-results")
        overrides["nova"] = {"topics": [f"{names}-versioned_notifications",
                                        f"{names}-notifications"],
                             "pool": f"{names}-pool"}
    for group, values in groups.items():
        overrides.setdefault(group, {}).update(values)
    conf = config.make_conf(overrides=overrides)
    bus.register_opts(conf)
    if url is not None:
        conf.set_override("transport_url", url)
    return conf


def instance_uuid(index: int) -> str:
    return str(uuid.UUID(int=0xBE7C0000_0000_4000_8000_000000000000 + index))


def seed_host(conf: Any, instances: int) -> tuple[SimulatedHost, list[str]]:
    """A host with one cached Gen1 image and ``instances`` identical running
    Gen1 instances (one NIC each), so every rescue makes the same calls."""
    sim = SimulatedHost.init(conf.simulated.state_file, conf.hyperv.instances_path)
    sim.add_image(IMAGE, 1, "vhd")
    uuids = [instance_uuid(index) for index in range(instances)]
    for index, value in enumerate(uuids):
        sim.add_vm(f"instance-{index + 1:08x}", value, IMAGE, nics=1)
    return sim, uuids


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def cost_of_calls(calls: list[dict[str, Any]]) -> float:
    """What a list of host calls slept, as the call log records it ("cost"):
    under a cost profile, a call's price depends on the VMs at that moment."""
    return float(sum(call.get("cost", 0.0) for call in calls))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep rescue-flow's and the libraries' INFO lines out of the figures."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


# -- the broker -------------------------------------------------------------------

def find_rabbit() -> tuple[str | None, str]:
    """(transport URL, "") of a broker that answers, else (None, why not)."""
    url = os.environ.get(RABBIT_URL_ENV) or DEFAULT_RABBIT_URL
    amqp = amqp_url(url)
    import kombu

    connection = kombu.Connection(amqp, connect_timeout=3)
    try:
        connection.connect()
    except Exception as exc:  # anything means "no broker here"
        return None, f"no RabbitMQ at {url}: {type(exc).__name__}: {exc}"
    finally:
        connection.release()
    return url, ""


def amqp_url(transport_url: str) -> str:
    """kombu's URL for the first host of an oslo.messaging rabbit:// URL."""
    from oslo_config import cfg
    from oslo_messaging import TransportURL

    parsed = TransportURL.parse(cfg.ConfigOpts(), transport_url)
    host = parsed.hosts[0]
    auth = f"{host.username}:{host.password}@" if host.username else ""
    vhost = parsed.virtual_host or ""
    return f"amqp://{auth}{host.hostname}:{host.port or 5672}/{vhost}"


def rabbit_version(transport_url: str | None) -> str | None:
    if transport_url is None:
        return None
    import kombu

    with contextlib.suppress(Exception), \
            kombu.Connection(amqp_url(transport_url), connect_timeout=3) as connection:
        connection.connect()
        version = connection.connection.server_properties.get("version")
        return version.decode() if isinstance(version, bytes) else str(version)
    return None


def delete_broker_objects(transport_url: str, queues: list[str],
                          exchanges: list[str]) -> None:
    """Best effort: leave nothing behind on a long-lived broker."""
    import kombu

    with contextlib.suppress(Exception), \
            kombu.Connection(amqp_url(transport_url), connect_timeout=5) as connection:
        channel = connection.channel()
        for queue in queues:
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
        for exchange in exchanges:
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)


def broker_names(conf: Any, hosts: list[str]) -> tuple[list[str], list[str]]:
    """(queues, exchanges) a run with ``conf`` made, to delete afterwards."""
    topics = [f"{conf.worker.requests_topic}.{host}" for host in hosts]
    topics.append(conf.worker.results_topic)
    queues = [f"{topic}.{p}" for topic in topics for p in ("info", "error")]
    queues.append(conf.nova.pool)
    return queues, [conf.worker.exchange]


# -- the machine ------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": ram_gib,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def versions(transport_url: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ("taskflow", "oslo.messaging", "SQLAlchemy", "kombu", "os-win",
                 "rescue-flow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    import sqlite3

    found["sqlite"] = sqlite3.sqlite_version
    found["RabbitMQ"] = rabbit_version(transport_url)
    return found


def rss_mib(pid: int | None = None) -> float:
    """Resident set size from /proc (VmRSS), in MiB."""
    path = f"/proc/{pid or 'self'}/status"
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in {path}")
