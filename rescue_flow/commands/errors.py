"""One error path for the ``rescue-flow`` command.

Whatever an operator's environment can break (the config, the state folder,
the history database, the simulated host's state, the quarantine list, the
broker's URL) ends a command with one line on stderr::

    rescue-flow COMMAND: what failed, the file or option: what to do next

and an exit code that tells the kind of problem (the ``EXIT_*`` values, as
docs/troubleshooting.md lists them). ``--debug`` adds the traceback. Any
other error (a bug) ends in one line too, which asks for ``--debug``.

Commands that record or change something before they would read a broken
file (``run``, ``resume``, ``worker``) call :func:`ready` first: it reads the
quarantine list, the simulated host and the history, so that a command that
fails here has changed nothing on the host or in the history.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg

from rescue_flow import exceptions

EXIT_OK = 0
EXIT_FAILED = 1  # a flow failed and was reverted, or was refused; an unexpected error
EXIT_BAD_INPUT = 2  # bad arguments, or a bad configuration
EXIT_QUARANTINED = 3
EXIT_NO_RESULT = 4  # the client got no result in time, or could not reach the broker
EXIT_ENVIRONMENT = 5  # a file, folder or database the command needs cannot be used
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


class Problem(Exception):
    """Something around the command stops it, said in the operator's words."""

    def __init__(self, text: str, code: int = EXIT_ENVIRONMENT) -> None:
        super().__init__(text)
        self.code = code


class ConfigInvalid(Problem):
    """The configuration cannot be loaded, or a value in it is not valid."""

    def __init__(self, text: str) -> None:
        super().__init__(text, EXIT_BAD_INPUT)


def report(command: str, exc: BaseException, conf: Any = None, debug: bool = False) -> int:
    """Print ``exc`` as one line (and its traceback with ``debug``); return
    the exit code."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    problem = describe(exc, conf)
    if problem is None:
        text, code = (f"unexpected error: {type(exc).__name__}: {_first_line(exc)}; "
                      "run the command again with --debug to see where"), EXIT_FAILED
    else:
        text, code = str(problem), problem.code
    print(f"{command}: {text}", file=sys.stderr, flush=True)
    return code


def describe(exc: BaseException, conf: Any = None) -> Problem | None:
    """The problem ``exc`` (or an exception that caused it) stands for; None
    when it is none the operator's environment explains."""
    for error in _chain(exc):
        problem = _describe_one(error, conf)
        if problem is not None:
            return problem
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # As Python shows a chain: "raise ... from None" cuts it.
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _describe_one(exc: BaseException, conf: Any) -> Problem | None:
    # Imported here: the simulated host and the quarantine list are not what
    # every command loads.
    from rescue_flow.simhost.store import StateFileCorrupt, StateFileMissing

    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, (StateFileCorrupt, exceptions.QuarantineFileCorrupt,
                        StateFileMissing, exceptions.StorageUnavailable)):
        return Problem(str(exc))
    if isinstance(exc, cfg.Error):
        return ConfigInvalid(f"cannot load the configuration: {_first_line(exc)}")
    if isinstance(exc, sa.exc.DBAPIError):
        return _database_problem(exc, conf)
    if isinstance(exc, OSError) and exc.filename:
        return _file_problem(exc, conf)
    return None


def _database_problem(exc: sa.exc.DBAPIError, conf: Any) -> Problem:
    reason = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
    url = _history_url(conf)
    if url is None or not url.drivername.startswith("sqlite"):
        shown = url.render_as_string(hide_password=True) if url is not None else "?"
        return Problem(f"the history database {shown} cannot be used: {reason}; check "
                       "[persistence] connection and that the database server answers")
    path = os.path.abspath(url.database or "")
    if "not a database" in reason or "malformed" in reason:
        return Problem(
            f"the history database {path} is damaged ({reason}): restore it from a "
            "backup, or move it and its -wal and -shm files aside to start an empty "
            "history")
    return Problem(
        f"the history database {path} cannot be opened ({reason}): this user must be "
        f"able to create and write files in {os.path.dirname(path)} (set by "
        "[persistence] connection, by default in [DEFAULT] state_path)")


def _history_url(conf: Any) -> sa.engine.URL | None:
    try:
        return sa.engine.make_url(conf.persistence.connection)
    except Exception:
        return None


def _file_problem(exc: OSError, conf: Any) -> Problem:
    path = str(exc.filename)
    where = _option_for(path, conf)
    if isinstance(exc, NotADirectoryError) or (
            isinstance(exc, FileExistsError) and os.path.isfile(path)):
        return Problem(f"{path}: a part of this path is a file, not a folder: check "
                       f"{where}, or move the file away")
    if isinstance(exc, IsADirectoryError):
        return Problem(f"{path} is a folder where a file belongs: check {where}")
    if isinstance(exc, PermissionError):
        return Problem(f"{path}: permission denied: {where} must be a folder this user "
                       "can read and write")
    return Problem(f"{path}: {exc.strerror or exc}: check {where}")


# Options that name files or folders, most specific last.
_PATH_OPTIONS = [("DEFAULT", "state_path"), ("simulated", "state_file"),
                 ("DEFAULT", "log_dir"), ("DEFAULT", "log_file"),
                 ("DEFAULT", "log_config_append")]


def _option_for(path: str, conf: Any) -> str:
    """The option that names ``path`` or a folder around it, as the operator
    would look for it: "[DEFAULT] state_path (/var/lib/rescue-flow)"."""
    candidates = []
    for group, name in _PATH_OPTIONS:
        try:
            found = (conf if group == "DEFAULT" else conf[group])[name]
        except Exception:
            continue
        if not found:
            continue
        label, value = f"[{group}] {name}", os.path.abspath(str(found))
        target = os.path.abspath(path)
        if value == target or value.startswith(target + os.sep) \
                or target.startswith(value + os.sep):
            candidates.append((value == target, len(value), label, value))
    if not candidates:
        return "the path"
    _, _, label, value = max(candidates)  # the option naming it, else the closest
    return f"{label} ({value})"


def ready(conf: Any, host: bool = True, history: bool = True) -> None:
    """Read what a command is about to change, before it changes anything:
    the simulated host (with ``host``), and the history with its quarantine
    list (with ``history``: the worker opens it itself, waiting out a
    database that is not up yet); raise what is wrong with them."""
    from rescue_flow.engine.quarantine import QuarantineList
    from rescue_flow.persistence.history import History
    from rescue_flow.simhost.store import StateStore

    if host and conf.hyperv.driver == "oswin" and sys.platform != "win32":
        raise ConfigInvalid("[hyperv] driver = oswin needs Windows with Hyper-V; here "
                            "only [hyperv] driver = simulated works")
    if history:
        with contextlib.closing(History.from_conf(conf)) as opened:
            QuarantineList(opened).all()
            opened.recent(limit=1)
    if host and conf.hyperv.driver == "simulated":
        StateStore(conf.simulated.state_file).read_from_disk()
