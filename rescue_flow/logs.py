"""Logging for every command, through oslo.log.

The worker logs at INFO (``--debug``: DEBUG, every os-win call included).
Foreground commands print what the operator needs themselves, so they log
only warnings; TaskFlow's own report of a failed step (a traceback) is
dropped there, since the command prints the failed step and its error.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_log import log as oslo_logging


def setup(conf: Any, daemon: bool) -> None:
    oslo_logging.setup(conf, "rescue-flow")
    if conf.debug:
        return
    if not daemon:
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("taskflow").setLevel(logging.ERROR)
