"""One flow per instance at a time, across threads and processes on this host.

The worker serializes requests per instance itself; this lock also covers a
``rescue-flow run`` typed by an operator while the worker is busy with the
same instance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rescue_flow.jsonstore import file_lock
from rescue_flow.requests import canonical_uuid


@contextlib.contextmanager
def instance_lock(lock_dir: str, instance_uuid: str) -> Iterator[None]:
    # canonical_uuid keeps the file name inside lock_dir whatever came in.
    name = canonical_uuid(instance_uuid, "instance uuid") + ".lock"
    with file_lock(os.path.join(lock_dir, name)):
        yield
