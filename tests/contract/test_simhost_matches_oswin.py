"""The simulated host offers os-win's methods with os-win's exact signatures.

Code written against the simulated host must run unchanged against os-win
on Windows, so every public method of a Sim*Utils class must exist on the
os-win class it mirrors with the same ``inspect.signature`` (names,
defaults, order). os-win wraps some methods in decorators that do not use
functools.wraps (their signature reads ``(*args, **kwargs)``); those are
unwrapped through their closure cells down to the function they decorate.

``OSWIN_CLASSES`` (attribute of SimulatedHost -> os-win class) and
``oswin_signature`` are meant for reuse: a test in this folder can
``from test_simhost_matches_oswin import OSWIN_CLASSES`` to check that the
Hyper-V adapter only calls methods os-win has.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from rescue_flow.simhost.host import SIM_CLASSES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's deprecation warning
    from os_win.utils.compute.vmutils import VMUtils
    from os_win.utils.network.networkutils import NetworkUtils
    from os_win.utils.pathutils import PathUtils
    from os_win.utils.storage.virtdisk.vhdutils import VHDUtils

OSWIN_CLASSES: dict[str, type] = {
    "vmutils": VMUtils,
    "vhdutils": VHDUtils,
    "pathutils": PathUtils,
    "netutils": NetworkUtils,
}

# The methods rescue-flow relies on: each must exist on both sides.
REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "vmutils": (
        "list_instance_notes", "list_instances", "vm_exists", "get_vm_generation",
        "get_vm_summary_info", "get_vm_state", "get_vm_memory_info",
        "get_vm_storage_paths", "get_disk_attachment_info", "get_vm_nic_names",
        "soft_shutdown_vm", "set_vm_state", "create_vm", "update_vm",
        "create_scsi_controller", "get_vm_scsi_controller", "get_vm_ide_controller",
        "get_free_controller_slot", "attach_drive", "attach_ide_drive",
        "attach_scsi_drive", "detach_vm_disk", "is_disk_attached", "set_boot_order",
        "create_nic", "destroy_nic", "destroy_vm", "get_vm_dvd_disk_paths",
        "get_instance_uuid", "get_vm_config_root_dir", "attach_volume_to_controller",
    ),
    "vhdutils": ("create_differencing_vhd", "get_vhd_format", "get_vhd_info",
                 "get_vhd_parent_path"),
    "pathutils": ("exists", "makedirs", "check_create_dir", "remove", "rmtree",
                  "rename"),
    "netutils": ("get_vnic_mac_address", "get_port_by_id", "connect_vnic_to_vswitch",
                 "get_vswitch_id", "vswitch_port_needed", "get_vnic_ids",
                 "remove_switch_port"),
}

# Public methods a Sim*Utils class may have although os-win lacks them.
# Empty on purpose: test affordances (seeding, views, faults) live on
# SimulatedHost, never on the classes that stand in for os-win's.
ALLOWED_EXTRAS: dict[str, frozenset[str]] = {attr: frozenset() for attr in SIM_CLASSES}


def unwrap(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The function called ``name`` that a decorator chain wraps.

    os-win's retry and not-found decorators do not use functools.wraps:
    the class attribute is an ``inner(*args, **kwargs)`` that keeps the
    original function in a closure cell. Search the cells, breadth first.
    """
    queue, seen = [func], set()
    while queue:
        candidate = inspect.unwrap(queue.pop(0))
        if id(candidate) in seen:
            continue
        seen.add(id(candidate))
        if candidate.__name__ == name:
            return candidate
        for cell in getattr(candidate, "__closure__", None) or ():
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if inspect.isfunction(content):
                queue.append(content)
    raise AssertionError(f"no function named {name} inside {func!r}")


def oswin_signature(attr: str, name: str) -> inspect.Signature:
    return inspect.signature(unwrap(getattr(OSWIN_CLASSES[attr], name), name))


def public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, callable)
            if not name.startswith("_")}


SIM_METHODS = sorted((attr, name) for attr, cls in SIM_CLASSES.items()
                     for name in public_methods(cls))
REQUIRED = sorted((attr, name) for attr, names in REQUIRED_METHODS.items()
                  for name in names)


def test_every_simulated_utils_class_has_an_oswin_counterpart() -> None:
    assert set(SIM_CLASSES) == set(OSWIN_CLASSES)


@pytest.mark.parametrize(("attr", "name"), REQUIRED, ids=[f"{a}.{n}" for a, n in REQUIRED])
def test_required_method_exists_in_oswin_and_in_the_simulated_host(
        attr: str, name: str) -> None:
    assert callable(getattr(OSWIN_CLASSES[attr], name, None)), f"os-win lacks {name}"
    assert callable(getattr(SIM_CLASSES[attr], name, None)), f"simhost lacks {name}"


@pytest.mark.parametrize(("attr", "name"), SIM_METHODS,
                         ids=[f"{a}.{n}" for a, n in SIM_METHODS])
def test_simulated_method_has_the_signature_of_the_oswin_method(
        attr: str, name: str) -> None:
    if name in ALLOWED_EXTRAS[attr]:
        pytest.skip("test affordance, not part of os-win")
    oswin_method = getattr(OSWIN_CLASSES[attr], name, None)
    assert oswin_method is not None, (
        f"Sim {attr}.{name} is not an os-win method: move it to SimulatedHost "
        f"or list it in ALLOWED_EXTRAS with a reason")
    assert inspect.signature(getattr(SIM_CLASSES[attr], name)) == \
        oswin_signature(attr, name)


def test_unwrapping_reaches_the_function_oswins_decorators_wrap() -> None:
    # Without unwrapping, set_vm_state and rmtree read (*args, **kwargs) and
    # a comparison against them would be meaningless.
    assert str(inspect.signature(VMUtils.set_vm_state)) == "(*args, **kwargs)"
    assert str(oswin_signature("vmutils", "set_vm_state")) == "(self, vm_name, req_state)"
    assert str(oswin_signature("pathutils", "rmtree")) == "(self, path)"
    assert str(oswin_signature("vmutils", "get_vm_summary_info")) == "(self, vm_name)"


def test_a_signature_that_differs_from_oswin_is_detected() -> None:
    def set_vm_state(self, vm_name, state):  # a look-alike, one parameter renamed
        return None

    assert inspect.signature(set_vm_state) != oswin_signature("vmutils", "set_vm_state")
