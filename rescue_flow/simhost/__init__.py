"""A simulated Hyper-V host, for Linux, tests and demos.

rescue-flow drives Hyper-V through os-win, which needs Windows and WMI. On
Linux it runs against this package instead: ``SimulatedHost(state_file)``
offers ``vmutils``, ``vhdutils``, ``pathutils`` and ``netutils``, objects
with os-win's method names and signatures (checked by
``tests/contract/test_simhost_matches_oswin.py``) that return what os-win
returns and raise os-win's own exception classes. Beside that surface, on
the host object only, sit the test affordances: seeding (``add_image``,
``add_vm``), inspection (``view``, ``view_json``, ``calls``) and injection
(``set_fault``, ``set_latency``, ``clear_faults``).

What it models: VMs (notes, generation, memory, vCPUs, power state,
configuration folder, IDE/SCSI controllers and their slots, boot order,
NICs and their switch, checkpoints, Gen2 Secure Boot and its template),
files (VHD/VHDX/AVHDX/ISO, differencing parents) and folders, virtual
switches, the image cache, and the refusals Hyper-V makes (occupied slot,
missing file, disk attached twice, unknown VM, NIC or switch, a VM that
cannot start because a disk file is gone). Windows rules too: paths are
Windows paths by default (rescue_flow.simhost.paths: drive letters, UNC,
``\\\\?\\`` extended-length paths, case-insensitive); VM, NIC and switch names
compare ignoring case as WQL does; a file a running VM holds open (a disk,
or a parent of one) cannot be removed or renamed (PermissionError, WinError
32, a sharing violation); IDE drives, new controllers and vCPU changes are
refused while a VM is not off (SCSI disks are hot-added); a checkpoint's
parent disk is never attached to another VM. The whole host is an
SQLite database (Python's sqlite3), shared safely by threads and
processes; every call is logged; faults and latency can be injected per
method, including crashes of the calling process before or after a call
takes effect.

What it does NOT model (so do not mistake it for Hyper-V):

- duplicate VM or NIC names (Hyper-V allows them; here they are refused,
  ignoring case);
- WMI jobs, their progress and timeouts, and os-win's internal retries (a
  fault stands for the failure os-win's caller finally sees);
- memory hot-add/remove rules (static memory of a running VM may change
  here, as on Windows Server 2016 and later for any guest), and creating,
  applying or merging checkpoints (a VM is seeded with its checkpoints);
- MAX_PATH: paths longer than 260 characters work without ``\\\\?\\`` here;
- dynamic memory (dynamic_mem_ratio is ignored), NUMA, live migration,
  clustering, planned VMs, serial ports, RemoteFX, PCI passthrough, vTPM,
  shielded VMs, VLANs, port profiles and security rules;
- real file contents and sizes (every image has a virtual size of 1 GiB),
  VHD signatures, disk merging or resizing, physical disks beyond the
  passthrough path string;
- guests: a soft shutdown is instant ("clean") or ignored ("hang"); nothing
  ever boots, so a Gen2 VM boots "fine" from anything its order lists, with
  or without Secure Boot and whatever the template;
- host-wide limits (memory, disk space) and the order in which WMI returns
  objects (lists here are sorted or in creation order).

See docs/simulated-host.md for the state file, faults and the CLI.
"""

from rescue_flow.simhost.host import SimulatedHost

__all__ = ["SimulatedHost"]
