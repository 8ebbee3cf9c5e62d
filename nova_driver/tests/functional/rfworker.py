"""The real rescue-flow worker, as a separate process, on a simulated Hyper-V host.

The worker runs from the worker's own environment (``RESCUE_FLOW_BIN``, by
default ``<repo>/.venv/bin``, built by ``make .venv/.installed``), never from
.venv-nova: the two sets of pins conflict. The tests talk to it only as an
operator or Nova would: through its config file, the broker, its CLI
(``rescue-flow status --json``) and the simulated host's state file (through
``simtool.py``, run with the worker's Python).

Every name on the broker is unique to one fixture (exchange, topics, pool,
host), so runs and tests never cross-talk, and the fixture deletes its
queues and exchange afterwards. Nova's exchange ``nova`` is Nova's and shared:
it is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import fixtures

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SIMTOOL = HERE / "simtool.py"
START_TIMEOUT = 30.0


def worker_bin() -> Path:
    """Folder of the worker's ``rescue-flow`` and ``python``."""
    return Path(os.environ.get("RESCUE_FLOW_BIN") or REPO / ".venv" / "bin")


def amqp_url(transport_url: str) -> str:
    """kombu URL of the first host of an oslo.messaging ``rabbit://`` URL."""
    parsed = urlparse(transport_url)
    netloc = parsed.netloc.split(",")[0]
    vhost = parsed.path[1:] if parsed.path not in ("", "/") else "/"
    return f"amqp://{netloc}/{quote(vhost, safe='')}"


def _die_with_the_tests() -> None:
    """In the worker's process, before exec: get SIGTERM when the test
    process dies, however it dies (Linux), so no worker outlives a run."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


class SimHost:
    """The simulated Hyper-V host a worker uses, seen from outside."""

    def __init__(self, state_file: Path, instances_path: Path) -> None:
        self.state_file = state_file
        self.instances_path = instances_path

    def run(self, *ops: tuple[str, dict[str, Any]] | tuple[str]) -> list[Any]:
        """Apply ``ops`` in one process of the worker's Python; their results."""
        done = subprocess.run(
            [str(worker_bin() / "python"), "-W", "ignore", str(SIMTOOL),
             str(self.state_file), str(self.instances_path), json.dumps(ops)],
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"simtool {ops} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    def view(self) -> dict[str, Any]:
        """The canonical view (VMs, disks, NICs, files, images)."""
        return self.run(("view", {}))[0]

    def add_vm(self, name: str, instance_uuid: str, image_id: str, generation: int = 2,
               fmt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Seed the VM Nova's Hyper-V driver would have built for an instance:
        root.vhd(x) differencing on ``_base/<image id>``; returns the view."""
        fmt = fmt or ("vhdx" if generation == 2 else "vhd")
        ops: list[Any] = [("ensure_image", {"image_id": image_id, "generation": generation,
                                            "fmt": fmt})]
        ops.append(("add_vm", {"name": name, "uuid": instance_uuid, "image_id": image_id,
                               "generation": generation, **kwargs}))
        ops.append(("view", {}))
        return self.run(*ops)[-1]

    def fault(self, method: str, mode: str = "permanent", after: int = 0,
              times: int | None = None) -> None:
        self.run(("set_fault", {"method": method, "mode": mode, "after": after,
                                "times": times}))

    def latency(self, method: str, seconds: float) -> None:
        self.run(("set_latency", {"method": method, "seconds": seconds}))

    def clear_faults(self) -> None:
        self.run(("clear_faults", {}))

    def calls(self) -> list[dict[str, Any]]:
        return self.run(("calls", {}))[0]


class WorkerFixture(fixtures.Fixture):
    """A ``rescue-flow worker`` process for Nova compute host ``host``.

    ``start()``, ``kill()`` (SIGKILL), ``stop()`` (SIGTERM, wait),
    ``status()`` (``rescue-flow status --json``), ``log()``; ``sim`` is the
    host. The config file is ``self.conf_file``; ``extra`` adds or overrides
    options, ``{"group": {"option": value}}``.
    """

    def __init__(self, base_dir: Path, host: str, transport_url: str,
                 extra: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.dir = Path(base_dir)
        self.host = host
        self.transport_url = transport_url
        self.extra = extra or {}
        self.name = f"rfnova-{uuid.uuid4().hex[:10]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- config -----------------------------------------------------------

    def options(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {
            "DEFAULT": {"transport_url": self.transport_url, "host": self.host,
                        "state_path": self.dir / "state"},
            # A POSIX instances folder, as `make demo` uses.
            "hyperv": {"driver": "simulated", "instances_path": self.dir / "instances",
                       "soft_shutdown_timeout": 2, "power_state_poll_interval": 0.05},
            "simulated": {"state_file": self.dir / "state" / "simulated-host.sqlite"},
            "retry": {"initial_backoff": 0.05, "max_backoff": 0.2},
            "nova": {"exchange": "nova", "pool": f"{self.name}-pool", "hosts": self.host},
            "worker": {"exchange": f"{self.name}-ex",
                       "requests_topic": f"{self.name}-requests",
                       "results_topic": f"{self.name}-results"},
            # Reconnect fast (defaults back off to 30 s).
            "oslo_messaging_rabbit": {"rabbit_retry_interval": 1,
                                      "rabbit_retry_backoff": 0},
        }
        for group, values in self.extra.items():
            groups.setdefault(group, {}).update(values)
        return groups

    def write_conf(self) -> None:
        lines = []
        for group, values in self.options().items():
            lines.append(f"[{group}]")
            lines += [f"{key} = {value}" for key, value in values.items() if value is not None]
            lines.append("")
        self.conf_file.write_text("\n".join(lines))

    def _setUp(self) -> None:
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        (self.dir / "instances").mkdir(parents=True, exist_ok=True)
        self.conf_file = self.dir / "rescue-flow.conf"
        self.log_file = self.dir / "worker.log"
        self.write_conf()
        opts = self.options()
        self.sim = SimHost(Path(opts["simulated"]["state_file"]),
                           Path(opts["hyperv"]["instances_path"]))
        self.sim.run(("init", {}))
        self.addCleanup(self._delete_broker_objects)
        self.addCleanup(self.stop)

    # -- the process --------------------------------------------------------

    def start(self, wait: bool = True) -> None:
        """Start the worker; with ``wait``, until it logs that it started."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        marker = f"Worker for host {self.host} started"
        already = self.log().count(marker)
        with open(self.log_file, "ab") as log:
            log.write(f"==== start {self.starts} ====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(worker_bin() / "rescue-flow"), "--config-file", str(self.conf_file),
                 "worker"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
                preexec_fn=_die_with_the_tests)
        if not wait:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while self.log().count(marker) <= already:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}):\n"
                                   + self.log())
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start in time:\n" + self.log())
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is finished or cleaned up."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM and wait (the worker finishes its running flows)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(worker_bin() / "rescue-flow"), "--config-file", str(self.conf_file), *args],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})

    def status(self, instance_uuid: str | None = None) -> list[dict[str, Any]]:
        """``rescue-flow status [UUID] --json``: the recorded requests."""
        done = self.cli("status", *([instance_uuid] if instance_uuid else []), "--json")
        if done.returncode != 0:
            raise RuntimeError(f"rescue-flow status failed:\n{done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    # -- the broker ------------------------------------------------------------

    def queue_names(self) -> list[str]:
        opts = self.options()
        topics = [f"{opts['worker']['requests_topic']}.{self.host}",
                  opts["worker"]["results_topic"]]
        return [f"{t}.{p}" for t in topics for p in ("info", "error")] + [opts["nova"]["pool"]]

    def _delete_broker_objects(self) -> None:
        import kombu

        with contextlib.suppress(Exception), \
                kombu.Connection(amqp_url(self.transport_url), connect_timeout=5) as conn:
            channel = conn.channel()
            for queue in self.queue_names():
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
            with contextlib.suppress(Exception):
                channel.exchange_delete(self.options()["worker"]["exchange"])
