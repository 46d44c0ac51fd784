"""RSS after glibc gave back what it kept: the figure the soak's memory verdict is on.

A process's RSS counts memory its allocator holds, not only memory it uses. glibc's
``malloc`` keeps freed chunks for reuse and returns pages to the OS only when the
top of the heap is free for ``M_TRIM_THRESHOLD`` (128 KiB) or when asked with
``malloc_trim``; pages in the middle of the heap whose chunks are all free stay
resident. Under bursts (a queue filling with thousands of events, a broker restart
piling up buffers), the heap's high-water mark rises, and what is freed stays
counted: RSS climbs in small steps that are not a leak, and that do not all come
back once the bursts end.

So each sampler, every ``--trim-every`` samples, reads RSS (``rss_mib``, what the
process holds), calls ``malloc_trim(0)`` and reads RSS again
(``rss_trimmed_mib``, what it holds once glibc gave back its free pages). The
verdict on memory is on the trimmed figure; the untrimmed one is plotted and
reported beside it. A leak (objects kept, buffers kept) is in use, so trimming
cannot hide it: the trimmed figure grows as much.

Why, measured (docs/CONTRIBUTING.md has the figures): on NATS the untrimmed RSS
rose while ``tracemalloc``'s current size, the Python objects by type, pymalloc's
arenas and glibc's bytes in use (``mallinfo2().uordblks``) stayed flat; glibc's
free bytes and heap size rose instead, and ``malloc_trim(0)`` gave them back.

Elsewhere than Linux with glibc (musl, macOS) there is no ``malloc_trim``:
:func:`trim` returns False and the soak judges the untrimmed RSS.
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
