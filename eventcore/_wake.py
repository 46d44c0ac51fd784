"""One-shot wake-ups for the hot paths: what ``anyio.Event`` does for one waiter,
without its layers.

``anyio.Event()`` looks the running backend up on every call (``sniffio``), wraps
an ``asyncio.Event`` (a list of waiters, a future per wait, a loop check) and
adds a wrapper method per call. A worker parks and a ``publish_and_wait`` waits
once per event, with exactly one waiter each time, so on asyncio (and uvloop)
:class:`AsyncioWake` is one flag and at most one future; on trio,
``trio.Event`` itself. Only for one waiter: use ``anyio.Event`` anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol


class Wake(Protocol):
    """The part of ``anyio.Event`` the hot paths use."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[None]: ...


class AsyncioWake:
    """A one-shot event with at most one waiter, on asyncio.

    Unlike ``anyio.Event.wait``, awaiting :meth:`wait` returns at once, without a
    checkpoint, when the event is set already.
    """

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """Set the flag and wake the waiter, if any."""
        if not self._set:
            self._set = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    def wait(self) -> Awaitable[None]:
        """Await it until the flag is set (a cancellation cancels the wait, as with
        asyncio.Event). It is the future itself: no coroutine in between."""
        waiter = asyncio.get_running_loop().create_future()
        if self._set:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter


def wake_class(cancelled: type[BaseException]) -> Any:
    """The cheapest one-waiter event of the running loop, told by its cancellation class
    (``anyio.get_cancelled_exc_class()``)."""
    if cancelled is asyncio.CancelledError:
        return AsyncioWake
    import trio  # the only other backend anyio runs on

    return trio.Event
