"""Type aliases and protocols shared by the public API."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

E = TypeVar("E")
"""An event type."""

R = TypeVar("R")

Handler = Callable[[E], Awaitable[Any]] | Callable[[E], Any]
"""What handles one event: ``async def handler(event: E) -> Any``, or a plain ``def``
that eventcore runs in a worker thread."""

Filter = Callable[[E], bool]
"""A predicate; the subscription sees an event only when it returns true."""


class DropReason(str, enum.Enum):
    """Why an event left the dispatcher without being handled."""

    #: Refused under ``Overflow.DROP_NEWEST`` because the queue was full (never accepted).
    DROPPED_NEWEST = "dropped_newest"
    #: Accepted, then evicted under ``Overflow.DROP_OLDEST`` to make room for a newer event.
    EVICTED = "evicted"
    #: Accepted, but still queued or in flight when the shutdown timeout ran out.
    SHUTDOWN = "shutdown"
    #: Refused by a publish middleware that returned None (never accepted).
    REJECTED = "rejected"


ErrorHook = Callable[[Any, Callable[..., Any], BaseException], object]
"""``on_error(event, handler, exception)``: called for every handler failure."""

DropHook = Callable[[Any, DropReason], object]
"""``on_drop(event, reason)``: called for every event lost to overflow or shutdown."""


class Lifecycle(str, enum.Enum):
    """The moments ``on_lifecycle`` hears about."""

    #: ``async with`` entered: publishing works
    STARTED = "started"
    #: ``async with`` is being left: new publishes are refused, queued events drain
    DRAINING = "draining"
    #: drained (or timed out and reported), workers gone
    STOPPED = "stopped"
