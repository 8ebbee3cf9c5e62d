"""SimulatedHost: the os-win surface plus the test affordances beside it.

``host.vmutils``, ``host.vhdutils``, ``host.pathutils`` and ``host.netutils``
offer os-win's methods and nothing else. Seeding, inspection and fault
injection live here, on the host, so no affordance can be mistaken for
part of os-win.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rescue_flow.simhost import changes, costs, faults, paths, seed
from rescue_flow.simhost.engine import Engine, oswin_methods
from rescue_flow.simhost.model import HostState, new_state
from rescue_flow.simhost.networkutils import SimNetworkUtils
from rescue_flow.simhost.pathutils import SimPathUtils
from rescue_flow.simhost.store import StateFileMissing, StateStore
from rescue_flow.simhost.vhdutils import SimVHDUtils
from rescue_flow.simhost.view import build_view, render_text, to_json
from rescue_flow.simhost.vmutils import SimVMUtils

SIM_CLASSES: dict[str, type] = {
    "vmutils": SimVMUtils,
    "vhdutils": SimVHDUtils,
    "pathutils": SimPathUtils,
    "netutils": SimNetworkUtils,
}


def offered_methods() -> dict[str, str]:
    """Every os-win method the simulated host offers -> its attribute."""
    offered: dict[str, str] = {}
    for attr, cls in SIM_CLASSES.items():
        for name in oswin_methods(cls):
            # Faults and latencies are keyed by method name alone.
            assert name not in offered, f"{name} offered twice"
            offered[name] = attr
    return offered


def read_methods() -> frozenset[str]:
    """The os-win methods that only read the host (``mutates=False``): what
    "reads per flow" counts, in the tests and the benchmarks."""
    return frozenset(name for cls in SIM_CLASSES.values() for name in oswin_methods(cls)
                     if not getattr(cls, name).__oswin_mutates__)


class SimulatedHost:
    """A simulated Hyper-V host kept in a state file (an SQLite database).

    Any number of SimulatedHost objects, in any threads and processes, may
    share one state file; each os-win call is atomic against the others.
    """

    CRASH_EXIT_CODE = faults.CRASH_EXIT_CODE

    def __init__(self, state_file: str) -> None:
        self._store = StateStore(state_file)
        if not self._store.exists():
            raise StateFileMissing(
                f"simulated host state file {self._store.path} does not exist; "
                "create it with 'rescue-flow sim init'")
        engine = Engine(self._store)
        self.vmutils = SimVMUtils(engine)
        self.vhdutils = SimVHDUtils(engine)
        self.pathutils = SimPathUtils(engine)
        self.netutils = SimNetworkUtils(engine)

    @property
    def state_file(self) -> str:
        return self._store.path

    @classmethod
    def init(cls, state_file: str, instances_path: str,
             switches: Sequence[str] = ("external",),
             path_style: str | None = None) -> SimulatedHost:
        """Create a fresh, empty host (overwriting any state) and open it.

        ``path_style``: ``"windows"`` or ``"posix"`` (rescue_flow.simhost.paths);
        by default the style of ``instances_path``, which must be absolute.
        """
        if isinstance(switches, str):
            switches = (switches,)
        StateStore(state_file).replace(new_state(instances_path, list(switches),
                                                 path_style))
        return cls(state_file)

    # -- seeding -------------------------------------------------------------

    def add_image(self, image_id: str, generation: int, fmt: str) -> str:
        """Put ``<instances_path>/_base/<image_id>.<fmt>`` in the image cache."""
        return self._seed(seed.add_image, image_id, generation, fmt)

    def add_vm(self, name: str, uuid: str, image_id: str, generation: int | None = None,
               stopped: bool = False, boot_from_volume: bool = False, nics: int = 0,
               memory_mb: int = 1024, vcpus: int = 1, config_drive: bool = False,
               soft_shutdown: str = "clean", checkpoints: int = 0,
               secure_boot: str | None = None) -> None:
        """Create an instance VM as Nova's Hyper-V driver would have (see seed).

        ``checkpoints``: how many checkpoints the VM has (it then runs on an
        ``.avhd(x)`` chain); ``secure_boot``: None, ``"windows"`` or ``"linux"``.
        """
        self._seed(seed.add_vm, name, uuid, image_id, generation=generation,
                   stopped=stopped, boot_from_volume=boot_from_volume, nics=nics,
                   memory_mb=memory_mb, vcpus=vcpus, config_drive=config_drive,
                   soft_shutdown=soft_shutdown, checkpoints=checkpoints,
                   secure_boot=secure_boot)

    def put_file(self, path: str, data: bytes) -> None:
        """Write a file the way a program other than os-win does (nova-compute
        writing a rescue config drive into the instance's folder): a real
        host's file system is shared by every process, the simulated one by
        whoever opens the state file. Not an os-win call: not logged, no faults."""
        self._seed(seed.put_file, path, data)

    def delete_file(self, path: str) -> None:
        """Delete a file the way a program other than os-win does (see put_file)."""
        self._seed(seed.delete_file, path)

    def read_file(self, path: str) -> bytes | None:
        """What put_file wrote at ``path``, or None when it is gone (or has no
        content: files os-win made, such as disks, carry none)."""
        with self._store.locked() as tx:
            return seed.read_file(HostState(tx.data), path)

    def _seed(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        with self._store.locked() as tx:
            try:
                result = func(HostState(tx.data), *args, **kwargs)
            except BaseException:
                tx.discard()
                raise
            tx.commit()
            return result

    # -- saving and restoring ------------------------------------------------------

    def saved_state(self) -> dict[str, Any]:
        """The whole state (faults and latencies included), to restore later."""
        with self._store.locked() as tx:
            return changes.clone(tx.data)

    def restore_state(self, state: dict[str, Any]) -> None:
        """Put back a state from saved_state; the call log starts empty."""
        self._store.replace(changes.clone(state))

    # -- inspection ------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The canonical view: configuration only, see rescue_flow.simhost.view."""
        with self._store.locked() as tx:
            return build_view(tx.data)

    def view_json(self) -> str:
        return to_json(self.view())

    def view_text(self) -> str:
        """The view as a tree for people, with armed faults and latencies."""
        with self._store.locked() as tx:
            return render_text(build_view(tx.data), tx.data["faults"],
                               tx.data["latency"], tx.data.get("profile"))

    def calls(self) -> list[dict[str, Any]]:
        """The os-win calls made so far, oldest first: {"method", "args"}."""
        return self._store.read_calls()

    def clear_calls(self) -> None:
        self._store.clear_calls()

    @property
    def instances_path(self) -> str:
        with self._store.locked() as tx:
            return str(tx.data["instances_path"])

    @property
    def path_style(self) -> str:
        """``"windows"`` or ``"posix"``: how this host names its files."""
        with self._store.locked() as tx:
            return HostState(tx.data).style

    @property
    def paths(self) -> Any:
        """``ntpath`` or ``posixpath``, to build paths on this host."""
        return paths.module(self.path_style)

    # -- faults and latency ------------------------------------------------------

    def set_fault(self, method: str, mode: str, after: int = 0,
                  times: int | None = None) -> None:
        """Make calls of ``method`` fail; see rescue_flow.simhost.faults."""
        faults.check_method(method, offered_methods())
        with self._store.locked() as tx:
            faults.set_fault(tx.data, method, mode, after, times)
            tx.commit()

    def set_latency(self, method: str, seconds: float) -> None:
        """Make each call of ``method`` take ``seconds`` longer (0 removes it)."""
        faults.check_method(method, offered_methods())
        with self._store.locked() as tx:
            faults.set_latency(tx.data, method, seconds)
            tx.commit()

    def set_cost_profile(self, profile: str | None = costs.DEFAULT_PROFILE,
                         scale: float = 1.0) -> None:
        """Make every call cost what the profile says (rescue_flow.simhost.costs):
        ``"wmi"`` (the default figures), a JSON file, or None for no cost.
        Per-method latencies (set_latency) still override it."""
        loaded = None if profile is None else costs.load(profile, scale)
        with self._store.locked() as tx:
            tx.data["profile"] = loaded
            tx.commit()

    def cost_profile(self) -> dict[str, Any] | None:
        """The host's profile: name, scale and [base, per_vm] per method."""
        with self._store.locked() as tx:
            profile = tx.data.get("profile")
            return changes.clone(profile) if profile else None

    def clear_faults(self) -> None:
        """Remove every fault and latency."""
        with self._store.locked() as tx:
            faults.clear(tx.data)
            tx.commit()

    def armed_faults(self) -> dict[str, Any]:
        """Armed faults (with their counters) and latencies, for inspection."""
        with self._store.locked() as tx:
            return {"faults": {k: dict(v) for k, v in tx.data["faults"].items()},
                    "latency": dict(tx.data["latency"])}

    def __repr__(self) -> str:
        return f"SimulatedHost({self._store.path!r})"


__all__ = ["SIM_CLASSES", "SimulatedHost", "offered_methods"]
