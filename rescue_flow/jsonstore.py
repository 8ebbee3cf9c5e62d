"""A small JSON document on disk, shared safely by threads and processes.

Reads and writes happen under an exclusive lock on a sibling ``.lock`` file;
writes go to a temporary file that is fsynced and renamed over the old one,
so a crash leaves either the old or the new document, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rescue_flow.filelock import lock_for

T = TypeVar("T")


class DocumentCorrupt(ValueError):
    """The file holds no JSON, or JSON of another kind than the document's."""


@contextlib.contextmanager
def file_lock(lock_path: str) -> Iterator[None]:
    """Exclusive lock between threads and processes (see rescue_flow.filelock)."""
    with lock_for(lock_path).held():
        yield


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


class JsonDocument:
    """A JSON object in one file; ``update`` is a locked read-modify-write."""

    def __init__(self, path: str, default: Callable[[], Any] = dict) -> None:
        self.path = path
        self._default = default

    def _load(self) -> Any:
        try:
            with open(self.path, encoding="utf-8") as handle:
                document = json.load(handle)
        except FileNotFoundError:
            return self._default()
        except ValueError as exc:
            raise DocumentCorrupt(f"{self.path} is not valid JSON ({exc}): restore it "
                                  "from a backup, or repair it by hand") from None
        expected = type(self._default())
        if not isinstance(document, expected):
            raise DocumentCorrupt(
                f"{self.path} holds a JSON {type(document).__name__} where a JSON "
                f"{'object' if expected is dict else expected.__name__} belongs: "
                "restore it from a backup, or repair it by hand")
        return document

    def read(self) -> Any:
        with file_lock(self.path + ".lock"):
            return self._load()

    def update(self, change: Callable[[Any], T]) -> T:
        """Apply ``change`` to the document in place and save it; returns its result."""
        with file_lock(self.path + ".lock"):
            document = self._load()
            result = change(document)
            write_atomically(self.path, json.dumps(document, indent=2, sort_keys=True))
            return result
