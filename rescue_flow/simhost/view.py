"""The host as a canonical view (for comparisons) and as text (for people).

The view holds configuration only: no timestamps, fault counters, latencies,
controller path strings or internal ids, so two hosts configured alike give
byte-identical ``view_json`` output, and a view taken before a failed,
reverted operation equals the one taken after.
"""

from __future__ import annotations

import json
from typing import Any

from rescue_flow.simhost.model import HostState, mac_with_colons
from rescue_flow.simhost.oswin import constants

POWER_NAMES = {
    constants.HYPERV_VM_STATE_ENABLED: "running",
    constants.HYPERV_VM_STATE_DISABLED: "off",
    constants.HYPERV_VM_STATE_PAUSED: "paused",
    constants.HYPERV_VM_STATE_SUSPENDED: "saved",
}
BOOT_DEVICE_NAMES = {
    constants.BOOT_DEVICE_FLOPPY: "FLOPPY", constants.BOOT_DEVICE_CDROM: "CDROM",
    constants.BOOT_DEVICE_HARDDISK: "HARDDISK", constants.BOOT_DEVICE_NETWORK: "NETWORK",
}


def _controller_name(st: HostState, vm: dict[str, Any], ctrl: dict[str, Any]) -> str:
    if ctrl["type"] == constants.CTRL_TYPE_IDE:
        return f"IDE {ctrl['addr']}"
    return f"SCSI {st.scsi_index(vm, ctrl)}"


def _vm_view(st: HostState, vm: dict[str, Any]) -> dict[str, Any]:
    return {
        "notes": list(vm["notes"] or []),
        "generation": vm["generation"],
        "memory_mb": vm["memory_mb"],
        "vcpus": vm["vcpus"],
        "power_state": POWER_NAMES.get(vm["state"], str(vm["state"])),
        "boot_order": list(vm["boot_order"]),
        "controllers": {
            _controller_name(st, vm, ctrl): {
                slot: {"path": drive["path"], "type": drive["type"]}
                for slot, drive in ctrl["slots"].items()}
            for ctrl in vm["controllers"]},
        "nics": [{"name": name, "mac": mac_with_colons(nic["mac"]),
                  "switch": nic["switch"]}
                 for name, nic in sorted(vm["nics"].items())],
        "checkpoints": list(vm.get("checkpoints", [])),
        "secure_boot": secure_boot_view(vm),
    }


def secure_boot_view(vm: dict[str, Any]) -> str | None:
    """None on Gen1 (no UEFI); "off", or the template of an enabled Gen2 VM."""
    if vm["generation"] != constants.VM_GEN_2:
        return None
    return vm.get("secure_boot_template") if vm.get("secure_boot") else "off"


def build_view(data: dict[str, Any]) -> dict[str, Any]:
    st = HostState(data)
    return {
        "switches": sorted(data["switches"]),
        "vms": {name: _vm_view(st, vm) for name, vm in data["vms"].items()},
        "files": {rec["path"]: {"format": rec["format"], "parent": rec["parent"]}
                  for rec in data["files"].values()},
        "images": {image_id: dict(image) for image_id, image in data["images"].items()},
    }


def to_json(view: dict[str, Any]) -> str:
    return json.dumps(view, sort_keys=True, indent=2) + "\n"


def render_text(view: dict[str, Any], faults: dict[str, Any] | None = None,
                latency: dict[str, float] | None = None,
                profile: dict[str, Any] | None = None) -> str:
    """A tree for people: VMs with their drives, NICs and boot order."""
    lines = [f"switches: {', '.join(view['switches']) or '(none)'}", "images:"]
    for image_id, image in sorted(view["images"].items()):
        lines.append(f"  {image_id}  gen {image['generation']}  {image['format']}  "
                     f"{image['path']}")
    lines.append("vms:" if view["vms"] else "vms: (none)")
    for name, vm in sorted(view["vms"].items()):
        lines.append(f"  {name}  {vm['power_state']}  gen {vm['generation']}  "
                     f"{vm['memory_mb']} MB  {vm['vcpus']} vCPU  "
                     f"notes {', '.join(vm['notes']) or '-'}")
        for ctrl_name, slots in sorted(vm["controllers"].items()):
            if not slots:
                lines.append(f"    {ctrl_name}: (empty)")
            for slot, drive in sorted(slots.items(), key=lambda s: int(s[0])):
                lines.append(f"    {ctrl_name}:{slot}  {drive['type']:<11} "
                             f"{drive['path']}")
        for nic in vm["nics"]:
            lines.append(f"    nic {nic['name']}  {nic['mac']}  "
                         f"-> {nic['switch'] or '(not connected)'}")
        if vm["secure_boot"] is not None:
            lines.append(f"    secure boot: {vm['secure_boot']}")
        if vm["checkpoints"]:
            lines.append(f"    checkpoints: {', '.join(vm['checkpoints'])}")
        order = [BOOT_DEVICE_NAMES.get(e, str(e)) if isinstance(e, int) else e
                 for e in vm["boot_order"]]
        lines.append(f"    boot: {', '.join(order) or '(empty)'}")
    lines.append("files:" if view["files"] else "files: (none)")
    for path, rec in sorted(view["files"].items()):
        parent = f"  <- {rec['parent']}" if rec["parent"] else ""
        lines.append(f"  {rec['format']:<5} {path}{parent}")
    for method, fault in sorted((faults or {}).items()):
        times = "always" if fault["times"] is None else f"{fault['times']} time(s)"
        lines.append(f"fault: {method}  {fault['mode']}  after {fault['after']}, "
                     f"{times}  (seen {fault['seen']})")
    if profile:
        lines.append(f"cost profile: {profile['name']} x {profile['scale']:g} "
                     f"({len(view['vms'])} VMs)")
    for method, seconds in sorted((latency or {}).items()):
        lines.append(f"latency: {method}  {seconds:g} s")
    return "\n".join(lines) + "\n"
