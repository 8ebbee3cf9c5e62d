"""Run a batch of simulated-host operations in ONE process of the worker's venv.

Not a test module: the Nova tests run in .venv-nova, which must not import
``rescue_flow`` (its pins conflict with Nova's). They call this script with the
worker's own Python instead, the way they call ``rescue-flow sim ...``, but
with several operations per process: each ``rescue-flow`` invocation costs
about a second of imports on a 2-core machine, and a test seeds, faults and
reads the host several times.

    python simtool.py STATE_FILE INSTANCES_PATH '[["init"], ["view"]]'

prints one JSON document: the list of each operation's result. Operations
are the public test affordances of ``rescue_flow.simhost.SimulatedHost``
(docs/simulated-host.md): ``init``, ``add_image``, ``add_vm``, ``view``,
``calls``, ``clear_calls``, ``set_fault``, ``set_latency``, ``clear_faults``,
``armed_faults``, and ``ensure_image`` (``add_image`` unless the image is
cached already); each is ``[name, {keyword arguments}]``.
"""

from __future__ import annotations

import json
import sys

OPERATIONS = {"ensure_image", "add_image", "add_vm", "view", "calls", "clear_calls", "set_fault",
              "set_latency", "clear_faults", "armed_faults"}


def main(argv: list[str]) -> int:
    from rescue_flow.simhost import SimulatedHost

    state_file, instances_path, ops = argv[1], argv[2], json.loads(argv[3])
    host = None
    results = []
    for op in ops:
        name, kwargs = op[0], (op[1] if len(op) > 1 else {})
        if name == "init":
            host = SimulatedHost.init(state_file, instances_path, **kwargs)
            results.append(None)
            continue
        if name not in OPERATIONS:
            print(f"simtool: unknown operation {name!r}", file=sys.stderr)
            return 2
        if host is None:
            host = SimulatedHost(state_file)
        if name == "ensure_image":
            cached = kwargs["image_id"] in host.view()["images"]
            results.append(None if cached else host.add_image(**kwargs))
            continue
        results.append(getattr(host, name)(**kwargs))
    json.dump(results, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
