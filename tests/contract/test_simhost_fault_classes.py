"""An injected fault raises what os-win 5.9.0 raises for that method.

The table lives in rescue_flow.simhost.oserrors (read from os-win's source);
this test checks that every method the simulated host offers has a row,
that a fault really raises that row's class (or, for ``exists``, answers
False as os.path.exists does), that the class is os-win's own (or the
OSError Python raises on Windows), that the adapter's retry decision follows
the mode, and that docs/simulated-host.md lists the same table.
"""

from __future__ import annotations

import os
import re

import pytest

from rescue_flow.hyperv import errors
from rescue_flow.simhost import SimulatedHost, oserrors
from rescue_flow.simhost.host import offered_methods
from rescue_flow.simhost.oswin import exceptions

UUID = "11111111-2222-4333-8444-555555555555"
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "simulated-host.md")
# Arguments that bind to each method's signature (the fault fires before
# the body runs, so they need not name anything that exists).
ARGS: dict[str, tuple] = {
    "attach_drive": ("vm", "p", "c", 0), "attach_ide_drive": ("vm", "p", 0, 0),
    "attach_scsi_drive": ("vm", "p"), "attach_volume_to_controller": ("vm", "c", 0, "p"),
    "check_create_dir": ("p",), "connect_vnic_to_vswitch": ("s", "n"),
    "create_differencing_vhd": ("p", "q"), "create_nic": ("vm", "n"),
    "create_scsi_controller": ("vm",), "create_vm": ("vm", False, 2, "p"),
    "destroy_nic": ("vm", "n"), "destroy_vm": ("vm",), "detach_vm_disk": ("vm",),
    "enable_secure_boot": ("vm", True), "exists": ("p",),
    "get_disk_attachment_info": ("p",), "get_free_controller_slot": ("c",),
    "get_port_by_id": ("n", "s"), "get_vhd_format": ("p",), "get_vhd_info": ("p",),
    "get_vhd_parent_path": ("p",), "get_vm_ide_controller": ("vm", 0),
    "get_vnic_ids": (), "get_vnic_mac_address": ("n",), "get_vswitch_id": ("s",),
    "is_disk_attached": ("p",), "list_instance_notes": (), "list_instances": (),
    "makedirs": ("p",), "remove": ("p",), "remove_switch_port": ("n",),
    "rename": ("p", "q"), "rmtree": ("p",), "set_boot_order": ("vm", []),
    "set_vm_state": ("vm", 2), "update_vm": ("vm", 512, 0, 1, 0, False, 1.0),
    "vswitch_port_needed": (),
}
OSWIN_OR_WINDOWS = (exceptions.OSWinException, exceptions.x_wmi, OSError)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return SimulatedHost.init(str(tmp_path_factory.mktemp("faults") / "h.json"),
                              r"C:\OpenStack\Instances")


def test_every_offered_method_has_a_row_and_every_row_a_method():
    assert set(oserrors.METHODS) == set(offered_methods())


@pytest.mark.parametrize("mode", ["permanent", "transient"])
@pytest.mark.parametrize("method", sorted(offered_methods()))
def test_an_injected_fault_raises_the_class_os_win_raises(host, method, mode):
    attr = offered_methods()[method]
    call = getattr(getattr(host, attr), method)
    args = ARGS.get(method, ("vm",))
    host.set_fault(method, mode, times=1)
    if oserrors.never_raises(method):
        assert call(*args) is oserrors.fallback(method)
        return
    expected = oserrors.fault_error(method, mode == "transient")
    with pytest.raises(OSWIN_OR_WINDOWS) as info:
        call(*args)
    assert type(info.value) is type(expected)
    assert errors.is_transient(info.value) is (mode == "transient")


def _docs_rows() -> dict[str, tuple[str, str]]:
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## What os-win raises"):]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = (cells[2], cells[3])
    return rows


def _describe(method: str, transient: bool) -> str:
    if oserrors.never_raises(method):
        return f"returns `{oserrors.fallback(method)}`"
    cls, code = oserrors.error_class(method, transient)
    if code is None:
        return f"`{cls.__name__}`"
    shown = f"0x{code:08X}" if code > 0xFFFF else str(code)
    return f"`{cls.__name__}` {shown}"


def test_the_docs_table_lists_every_method_with_its_classes():
    rows = _docs_rows()
    assert set(rows) == set(oserrors.METHODS)
    for method, (permanent, transient) in rows.items():
        assert (permanent, transient) == (_describe(method, False),
                                          _describe(method, True)), method


def print_docs_table() -> None:  # pragma: no cover - for maintainers
    """python -c 'import sys; sys.path.insert(0, "tests/contract");
    import test_simhost_fault_classes as t; t.print_docs_table()'"""
    by_row: dict[tuple[str, str, str], list[str]] = {}
    for method in sorted(oserrors.METHODS):
        key = (oserrors.family(method), _describe(method, False), _describe(method, True))
        by_row.setdefault(key, []).append(method)
    print("| methods | family | permanent fault | transient fault |")
    print("|---|---|---|---|")
    for (fam, perm, trans), methods in by_row.items():
        print(f"| {', '.join(f'`{m}`' for m in methods)} | {fam} | {perm} | {trans} |")
