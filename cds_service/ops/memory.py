"""Giving a large call's memory back to the system once it is answered.

A call with a body of several MB parses it into tens of MB of Python objects, and glibc's
malloc keeps the freed space in the process (a freed multi-MB buffer even raises its threshold
for using fresh mmaps, so the next ones come from the heap and fragment it): measured on the
production server, 40 concurrent 7.6 MB calls left each worker ~50-70 MB above its start.
`malloc_trim(0)` returns the free pages (a few ms); it runs only after calls with a large body.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

# Bodies from this size up are followed by a trim (a typical call's is ~0.25 MB).
LARGE_BODY_BYTES = 1024 * 1024


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS): nothing to do there."""
    name = ctypes.util.find_library("c")
    try:
        function: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return function


def is_large(body_bytes: int | None) -> bool:
    """Whether a call with a body of `body_bytes` (None: unknown, chunked) is worth a trim."""
    return body_bytes is None or body_bytes >= LARGE_BODY_BYTES


def release() -> None:
    """Returns the process's free heap pages to the system (where glibc runs)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
