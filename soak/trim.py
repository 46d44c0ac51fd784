"""RSS after glibc gave back what it kept: the figure the soak's memory verdict is on.

A process's RSS counts memory its allocators hold, not only memory it uses.
glibc's ``malloc`` keeps freed chunks for reuse and gives pages back to the OS
only when the top of its heap is free past ``M_TRIM_THRESHOLD`` (128 KiB) or when
asked with ``malloc_trim``; pages in the middle of the heap whose chunks are all
free stay resident. After a burst (a queue filled with thousands of events, a
broker restart piling up buffers, a pile of garbage freed at once) what was
freed stays counted, and RSS climbs in steps that are not a leak.

So the sampler, every ``--trim-every`` samples, reads RSS (``rss_mib``, what the
process holds), calls ``malloc_trim(0)`` and reads RSS again
(``rss_trimmed_mib``, what it holds once glibc gave back its free pages). The
memory verdict is on the trimmed figure; the untrimmed one is reported and
plotted beside it. A leak is memory in use, which no trim gives back: the
trimmed figure grows as much. (pymalloc, which holds Python's small objects,
has no such call: an arena of 1 MiB stays mapped while one of its objects
lives. The soak keeps them few by collecting each dead dispatcher at once: see
``soak.service``, and docs/CONTRIBUTING.md for the figures.)

Elsewhere than Linux with glibc (musl, macOS) there is no ``malloc_trim``:
:func:`available` is False, no trimmed figure is sampled and the soak judges the
untrimmed RSS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

__all__ = ["available", "trim"]


def _load() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        function = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_MALLOC_TRIM = _load()


def available() -> bool:
    """Whether this process's C library can give its free heap pages back."""
    return _MALLOC_TRIM is not None


def trim() -> bool:
    """Ask glibc to give every free page of its heaps back to the OS (``malloc_trim(0)``);
    False where there is no such call (the RSS then stays as it was)."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
