"""The one place the simulated host imports os-win.

Only ``os_win.constants`` and ``os_win.exceptions`` are used: the simulated
host speaks os-win's numbers and raises os-win's exception classes, so code
written against it catches exactly what it would catch on Windows. Nothing
else of os-win is imported (the rest needs WMI and Windows DLLs).
"""

from __future__ import annotations

import warnings

# os_win/__init__ imports eventlet, which warns that it is deprecated (an
# EventletDeprecationWarning, a plain Warning); that warning says nothing
# about our code and would clutter every CLI command.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from os_win import constants, exceptions

__all__ = ["constants", "exceptions"]
