#!/usr/bin/env python3
"""Smoke test of rescue and unrescue on a real Hyper-V host, through os-win.

Run on a Hyper-V host, elevated, with rescue-flow's venv and the worker's
config file (its [hyperv] and [retry] sections are used):

    python tools\\hyperv-smoke.py --config-file C:\\OpenStack\\rescue-flow\\etc\\rescue-flow.conf
        --create-from C:\\OpenStack\\Instances\\_base\\<image id>.vhdx [--switch NAME]
    python tools\\hyperv-smoke.py --config-file ... --instance <uuid of a throwaway instance>

--create-from makes a throwaway VM the way Nova's Hyper-V driver lays one out
(<instances_path>\\rf-smoke-xxxxxxxx\\root.vhd(x), a differencing disk on the
cached image; notes = a random instance uuid), running unless --stopped, and
removes it at the end (unless --keep). --instance uses a VM that exists; it is
stopped, rescued and unrescued, so give it one nobody needs.

First it checks, in [DEFAULT] state_path, what Windows does to files: a
file another handle holds open is replaced once it is let go (a bounded
retry on PermissionError), bytes come back as written (O_BINARY), an
instance lock file is removed after use, and oslo.concurrency's lock held by
another process is waited for.

Then it rescues (with --image, or the instance's own image) and unrescues
through the same code as ``rescue-flow run``: rescue_flow.hyperv.get_host with
the os-win driver, and FlowRunner with the worker's state folder (per-instance
locks, quarantine, history). Each step is printed with the os-win calls that
changed the host (all calls with --verbose). Checks: both flows succeed, the
instance is rescued in between (rescue VM running with the root disk), and
afterwards its configuration (HyperVHost.read_vm_config: disks and slots,
NICs, memory, vCPUs, generation, power state) equals what it was before, with
no rescue VM or rescue disk left.

Exit: 0 every check passed (or skipped: not Windows), 1 a check failed,
2 bad input or Hyper-V unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

SKIP = "skipped: needs Windows with Hyper-V"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# os-win methods that only read the host: printed with --verbose only.
_READ_PREFIXES = ("get_", "list_", "vm_exists", "exists", "is_")

Say = Callable[[str], None]


def say(line: str) -> None:
    print(line, flush=True)


class UsageError(Exception):
    """Bad arguments or a host that does not fit them."""


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 90 else text[:87] + "..."


class CallPrinter:
    """Wraps one os-win utility object and prints each call before making it."""

    def __init__(self, utils: Any, verbose: bool) -> None:
        self._utils = utils
        self._verbose = verbose

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._utils, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._verbose or not name.startswith(_READ_PREFIXES):
                shown = [_brief(a) for a in args] + [f"{k}={_brief(v)}"
                                                     for k, v in kwargs.items()]
                say(f"        os-win {name}({', '.join(shown)})")
            return attr(*args, **kwargs)

        return call


@dataclasses.dataclass
class Created:
    """What this run created on the host, to remove at the end."""

    folder: str | None = None
    root_disk: str | None = None
    vm: str | None = None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperv-smoke.py", description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (or docs/deployment.md) for details.")
    p.add_argument("--config-file", action="append", default=[], metavar="PATH",
                   help="rescue-flow's config file (the worker's); may repeat")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--instance", metavar="UUID",
                        help="an existing throwaway instance (its uuid, as in the VM notes)")
    target.add_argument("--create-from", metavar="VHD",
                        help="create a throwaway VM from this cached image: "
                        "<instances_path>\\_base\\<image id>.vhd or .vhdx")
    p.add_argument("--image", metavar="IMAGE_ID",
                   help="rescue image in the cache (default: the instance's own image)")
    p.add_argument("--generation", type=int, choices=(1, 2),
                   help="--create-from: VM generation (default: 2 for VHDX, 1 for VHD)")
    p.add_argument("--switch", metavar="NAME",
                   help="--create-from: give the VM a NIC on this virtual switch")
    p.add_argument("--stopped", action="store_true",
                   help="--create-from: leave the VM off (default: start it)")
    p.add_argument("--memory-mb", type=int, default=512, help="--create-from: memory")
    p.add_argument("--keep", action="store_true",
                   help="--create-from: do not remove the throwaway VM at the end")
    p.add_argument("--yes", action="store_true",
                   help="--instance: do not ask before stopping the instance")
    p.add_argument("--verbose", action="store_true",
                   help="print every os-win call, reads included")
    # For rescue-flow's own tests: the simulated host of [simulated] state_file.
    p.add_argument("--simulated", action="store_true", help=argparse.SUPPRESS)
    return p


def make_conf(args: argparse.Namespace) -> Any:
    from rescue_flow import config

    conf_args: list[str] = []
    for path in args.config_file:
        conf_args += ["--config-file", path]
    conf = config.make_conf(conf_args)
    conf.set_override("driver", "simulated" if args.simulated else "oswin", group="hyperv")
    return conf


class Smoke:
    def __init__(self, conf: Any, host: Any, utils: dict[str, Any],
                 args: argparse.Namespace) -> None:
        self.conf = conf
        self.host = host
        self.utils = utils
        self.args = args
        self.created = Created()
        self.problems: list[str] = []

    def vm_notes(self) -> dict[str, list[str]]:
        """VM name -> notes, for every VM on the host (os-win's own listing)."""
        return {name: list(notes)
                for name, notes in self.utils["vmutils"].list_instance_notes()}

    # Checks ------------------------------------------------------------

    def check(self, ok: bool, what: str) -> bool:
        say(f"  check: {what}: {'ok' if ok else 'FAILED'}")
        if not ok:
            self.problems.append(what)
        return ok

    # The throwaway VM --------------------------------------------------

    def create_vm(self) -> str:
        from rescue_flow import layout, records
        from rescue_flow.exceptions import InvalidIdentifier
        from rescue_flow.requests import canonical_uuid

        host, paths, image = self.host, self.host.paths, self.args.create_from
        cache = paths.join(host.instances_path, layout.IMAGE_CACHE_DIR)
        stem, ext = paths.splitext(paths.basename(image))
        if paths.normcase(paths.dirname(image)) != paths.normcase(cache) or \
                ext.lower() not in layout.DISK_EXTENSIONS:
            raise UsageError(f"--create-from must be a cached image, {cache}"
                             f"{paths.sep}<image id>.vhdx (or .vhd); copy it there first")
        try:
            canonical_uuid(stem, "image id")
        except InvalidIdentifier as exc:
            raise UsageError(f"--create-from: the file name must be the image id: {exc}") \
                from None
        if not host.file_exists(image):
            raise UsageError(f"--create-from: {image} does not exist")
        disk_format = host.disk_format(image)
        generation = self.args.generation or (2 if disk_format == "VHDX" else 1)
        if generation == records.GEN2 and disk_format != "VHDX":
            raise UsageError("a Gen2 VM boots only from a VHDX image")
        if self.args.switch and self.args.switch not in self.conf.hyperv.vswitch_names:
            say(f"  note: switch {self.args.switch} is not in [hyperv] vswitch_names; "
                "the rescue VM's NIC will be left unconnected")

        instance_uuid = str(uuid.uuid4())
        name = f"rf-smoke-{instance_uuid[:8]}"
        folder = paths.join(host.instances_path, name)
        root = paths.join(folder, "root" + ext.lower())
        say(f"Creating throwaway VM {name} (instance {instance_uuid}, Gen{generation}) "
            f"on {image}:")
        self.utils["pathutils"].check_create_dir(folder)
        self.created.folder = folder
        host.create_differencing_disk(root, image)
        self.created.root_disk = root
        host.create_vm(name, generation, self.args.memory_mb, 1, folder, [instance_uuid])
        self.created.vm = name
        controller = records.CTRL_IDE if generation == records.GEN1 else records.CTRL_SCSI
        host.attach_disk(name, records.DiskAttachment(root, controller, 0, 0))
        if generation == records.GEN2:
            host.set_boot_order(name, generation, (root,))
        if self.args.switch:
            mac = "02:" + ":".join(f"{random.randrange(256):02X}" for _ in range(5))
            host.add_nic(name, records.Nic(f"{name}-nic0", mac, self.args.switch))
        if not self.args.stopped:
            host.start_vm(name)
        return instance_uuid

    def remove_created(self) -> None:
        from rescue_flow import layout
        from rescue_flow.engine.quarantine import QuarantineList

        host, created = self.host, self.created
        if created.vm is None and created.folder is None:
            return
        say(f"\nRemoving what this run created ({created.vm or created.folder}):")
        steps: list[tuple[str, Callable[[], None]]] = []
        if created.vm is not None:
            vm = created.vm
            notes = self.vm_notes().get(vm) or [""]
            instance_uuid = notes[0]
            rescue = host.find_rescue_vm(instance_uuid) if instance_uuid else None
            if rescue is not None:  # a failed run may leave one
                steps.append((f"rescue VM {rescue.name}",
                              lambda: host.destroy_vm(rescue.name)))
            if created.folder is not None:
                for path in layout.rescue_disk_candidates(host.instances_path,
                                                          created.folder):
                    steps.append((f"file {path}", lambda p=path: host.delete_file(p)))
            steps.append((f"VM {vm}", lambda: self._destroy(vm)))
            if instance_uuid:
                def unquarantine() -> None:
                    QuarantineList.from_conf(self.conf).remove(instance_uuid)

                steps.append(("its quarantine entry, if any", unquarantine))
        if created.root_disk is not None:
            steps.append((f"file {created.root_disk}",
                          lambda: host.delete_file(created.root_disk)))
        if created.folder is not None:
            folder = created.folder
            steps.append((f"folder {folder}", lambda: self._remove_folder(folder)))
        for what, action in steps:
            try:
                action()
            except Exception as exc:
                say(f"  could not remove {what}: {type(exc).__name__}: {exc}")
                self.problems.append(f"left behind: {what}")

    def _destroy(self, vm: str) -> None:
        if self.host.vm_exists(vm):
            self.host.power_off(vm)
            self.host.destroy_vm(vm)

    def _remove_folder(self, folder: str) -> None:
        if self.utils["pathutils"].exists(folder):
            self.utils["pathutils"].rmtree(folder)

    # The run -----------------------------------------------------------

    def existing_instance(self) -> str:
        from rescue_flow.exceptions import InvalidRequest
        from rescue_flow.requests import canonical_uuid

        try:
            instance_uuid = canonical_uuid(self.args.instance, "instance uuid")
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
        vm = self.host.find_instance_vm(instance_uuid)
        if vm is None:
            raise UsageError(f"no VM on this host carries instance {instance_uuid} "
                             "in its notes")
        if not self.args.yes:
            try:
                answer = input(f"This stops VM {vm} (instance {instance_uuid}), rescues "
                               "and unrescues it. Continue? [y/N] ")
            except EOFError:
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                raise UsageError("not confirmed (--yes skips the question)")
        return instance_uuid

    def run_flow(self, runner: Any, action: str, instance_uuid: str) -> Any:
        from rescue_flow.requests import Request

        request = Request(action=action, instance_uuid=instance_uuid,
                          image_id=self.args.image if action == "rescue" else None,
                          request_id=f"smoke-{uuid.uuid4()}", host=self.conf.host,
                          source="cli")
        say(f"\n{action} {instance_uuid} (request {request.request_id}):")
        started = time.monotonic()

        def on_step(event: Any) -> None:
            took = f" ({event.seconds:.2f}s)" if event.seconds is not None else ""
            say(f"    {event.step}: {event.state}{took}")

        result = runner.handle(request, on_step=on_step)
        line = f"  {action}: {result.outcome.value} in {time.monotonic() - started:.1f}s"
        say(line + (f": {result.reason}" if result.reason else ""))
        if result.reverted_steps:
            say(f"  reverted: {', '.join(result.reverted_steps)}")
        return result

    def compare(self, before: Any, after: Any) -> None:
        from rescue_flow import records

        old, new = dataclasses.asdict(before), dataclasses.asdict(after)
        changed = sorted(key for key in old if old[key] != new[key])
        if changed == ["power_state"] and old["power_state"] == records.POWER_OFF \
                and new["power_state"] == records.POWER_RUNNING:
            say("  note: the instance was off and runs now: unrescue starts it, as "
                "Nova's unrescue leaves it active")
            changed = []
        for key in changed:
            say(f"    {key}: before {old[key]!r}")
            say(f"    {key}: after  {new[key]!r}")
        self.check(not changed, "the instance's configuration is as before"
                   + (f" (differs: {', '.join(changed)})" if changed else ""))

    def check_files(self) -> None:
        """What Windows does to lock files that Linux cannot show, in the state
        folder: removed after use, and waited for across processes."""
        import subprocess

        from rescue_flow.engine import locks

        say("\nLock files in the state folder:")
        folder = os.path.join(self.conf.state_path, "smoke-files")
        lock_dir = os.path.join(folder, "locks")
        probe = str(uuid.uuid4())
        with locks.instance_lock(lock_dir, probe):
            pass
        self.check(not os.path.exists(os.path.join(lock_dir, probe + ".lock")),
                   "an instance lock file is removed after use")
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from rescue_flow.engine import locks\n"
            "with locks.file_lock(sys.argv[1]):\n"
            "    print('held', flush=True); time.sleep(1.5)"), os.path.join(folder, "x.lock")],
            stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        holder.stdout.readline()
        started = time.monotonic()
        with locks.file_lock(os.path.join(folder, "x.lock")):
            waited = time.monotonic() - started
        holder.wait(30)
        self.check(waited > 0.5, f"a lock held by another process is waited for "
                   f"({waited:.2f}s)")

    def run(self) -> int:
        from rescue_flow import layout, records
        from rescue_flow.engine.runner import FlowRunner
        from rescue_flow.outcome import Outcome
        from rescue_flow.tasks import observe

        host = self.host
        try:
            instance_uuid = (self.create_vm() if self.args.create_from
                             else self.existing_instance())
            vm = host.find_instance_vm(instance_uuid)
            assert vm is not None
            before = host.read_vm_config(vm)
            vms_before = sorted(self.vm_notes())
            say(f"\nInstance {instance_uuid}: VM {vm}, Gen{before.generation}, "
                f"{before.power_state}, root disk {before.root_disk.path} "
                f"({before.root_disk.controller_type} {before.root_disk.controller_addr}:"
                f"{before.root_disk.slot}), {len(before.nics)} NIC(s)")
            os.makedirs(self.conf.state_path, exist_ok=True)
            self.check_files()
            runner = FlowRunner.durable(self.conf, host)

            rescued = self.run_flow(runner, "rescue", instance_uuid)
            if self.check(rescued.outcome is Outcome.SUCCESS, "rescue succeeded"):
                seen = observe.observe(host, instance_uuid)
                self.check(seen.state == observe.RESCUED,
                           f"the host shows the instance rescued (it shows {seen.state})")
                rescue_vm = seen.rescue_vm.name if seen.rescue_vm else None
                self.check(rescue_vm is not None and
                           host.power_state(rescue_vm) == records.POWER_RUNNING,
                           f"rescue VM {rescue_vm} is running")
                self.check(rescue_vm is not None and
                           host.disk_attached_to(rescue_vm, before.root_disk.path),
                           "the root disk is on the rescue VM")
                unrescued = self.run_flow(runner, "unrescue", instance_uuid)
                self.check(unrescued.outcome is Outcome.SUCCESS and not unrescued.leftovers,
                           "unrescue succeeded and left nothing behind")
            else:
                say("  (a failed rescue must leave the host as it was: comparing)")

            say("\nAfter:")
            self.compare(before, host.read_vm_config(vm))
            self.check(host.find_rescue_vm(instance_uuid) is None, "no rescue VM is left")
            leftover = [path for path in layout.rescue_disk_candidates(
                host.instances_path, before.instance_dir) if host.file_exists(path)]
            self.check(not leftover, "no rescue disk is left"
                       + (f" ({', '.join(leftover)})" if leftover else ""))
            self.check(sorted(self.vm_notes()) == vms_before,
                       "the host has the same VMs as before")
        except UsageError as exc:
            say(f"hyperv-smoke: {exc}")
            return EXIT_USAGE
        finally:
            if not self.args.keep:
                self.remove_created()
            elif self.created.vm:
                say(f"\nKept VM {self.created.vm} in {self.created.folder} (--keep).")
        if self.problems:
            say(f"\nhyperv-smoke: {len(self.problems)} check(s) failed: "
                f"{'; '.join(self.problems)}")
            return EXIT_FAILED
        say("\nhyperv-smoke: every check passed")
        return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wants_help = bool({"-h", "--help"} & set(argv))
    if sys.platform != "win32" and "--simulated" not in argv and not wants_help:
        say(SKIP)
        return EXIT_OK
    args = parser().parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rescue_flow import hyperv

    conf = make_conf(args)
    try:
        utils = hyperv.utils_for(conf)
    except Exception as exc:  # no WMI, no Hyper-V role, not elevated...
        say(f"hyperv-smoke: cannot reach Hyper-V through os-win: "
            f"{type(exc).__name__}: {exc} (run it elevated on a Hyper-V host)")
        return EXIT_USAGE
    printed = {name: CallPrinter(obj, args.verbose) for name, obj in utils.items()}
    host = hyperv.get_host(conf, utils=printed)
    return Smoke(conf, host, printed, args).run()


if __name__ == "__main__":
    sys.exit(main())
