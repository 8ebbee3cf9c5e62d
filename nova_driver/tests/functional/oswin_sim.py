"""os-win's utilities on the simulated host, for compute-hyperv's own code.

compute-hyperv builds its os-win utilities through ``utilsfactory``, except
its PathUtils, which subclasses os-win's. ``oswin_on_sim`` hands it the
simulated host's (each call then goes into the host's call log and may be
given a fault) and stand-ins for what needs a real Windows host and is not
under test (hostutils, WMI event listeners, WMI jobs). Used by the Nova
tests (driver_harness.py) and by benchmark B6 (bench/compute_hyperv_side.py).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

# os-win utilities the simulated host offers (docs/simulated-host.md); every
# other one compute-hyperv builds is a stand-in.
SIM_UTILS = {"vmutils": "vmutils", "vhdutils": "vhdutils", "pathutils": "pathutils",
             "networkutils": "netutils"}


class SimVMUtilsPlus:
    """The simulated host's VMUtils plus two calls compute-hyperv makes that
    it lacks: ``stop_vm_jobs`` (destroy; there are no WMI jobs) and
    ``get_vm_power_state_change_listener`` (the driver's constructor; the
    listener is never started here: Nova's own power sync is enough)."""

    def __init__(self, vmutils: Any) -> None:
        self._vmutils = vmutils

    def stop_vm_jobs(self, vm_name: str, timeout: Any = None) -> None:
        return None

    def get_vm_power_state_change_listener(self, *args: Any, **kwargs: Any) -> Any:
        return mock.MagicMock(name="WMI power state listener stand-in")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vmutils, name)


class SimVHDUtilsPlus:
    """The simulated host's VHDUtils plus ``get_internal_vhd_size_by_file_size``
    (a size computation a VHDX rescue disk asks for; sizes are not modelled)."""

    def __init__(self, vhdutils: Any) -> None:
        self._vhdutils = vhdutils

    def get_internal_vhd_size_by_file_size(self, path: str, size: int) -> int:
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vhdutils, name)


def oswin_on_sim(sim_host: Any) -> Any:
    """Patch os-win's utilsfactory: the simulated host's utilities, stand-ins
    (autospec-free MagicMocks; Windows is new enough and runs both VM
    generations) for the rest."""
    from os_win import utilsfactory

    def get_class(class_type: str, *args: Any, **kwargs: Any) -> Any:
        if class_type == "vmutils":
            return SimVMUtilsPlus(sim_host.vmutils)
        if class_type == "vhdutils":
            return SimVHDUtilsPlus(sim_host.vhdutils)
        if class_type in SIM_UTILS:
            return getattr(sim_host, SIM_UTILS[class_type])
        stand_in = mock.MagicMock(name=f"os-win {class_type} stand-in")
        stand_in.check_min_windows_version.return_value = True
        stand_in.get_default_vm_generation.return_value = "hyperv-gen1"
        stand_in.get_supported_vm_types.return_value = ["hyperv-gen1", "hyperv-gen2"]
        return stand_in

    return mock.patch.object(utilsfactory, "_get_class", get_class)


def pathutils_on_sim(sim_host: Any) -> list[Any]:
    """Patches (to start) that send compute-hyperv's PathUtils, a subclass of
    os-win's rather than one from utilsfactory, to the simulated host: each
    os-win method the host offers goes to the host's PathUtils."""
    from os_win.utils import pathutils

    offered = type(sim_host.pathutils)

    def delegate(name: str) -> Any:
        return lambda self, *args, **kwargs: getattr(sim_host.pathutils, name)(*args,
                                                                               **kwargs)

    return [mock.patch.object(pathutils.PathUtils, name, delegate(name))
            for name in dir(offered)
            if getattr(getattr(offered, name), "__oswin_call__", False)]
