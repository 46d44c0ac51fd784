"""Event ids: UUIDv7 strings, unique across processes and sortable by time.

Layout (RFC 9562 UUIDv7 with a counter): 48 bits of Unix milliseconds, the
version ``7``, 26 random bits drawn once per process (again after ``fork``), the
variant, and a 48-bit counter that starts at a random value and grows with
every id. Within one process ids only increase (also when the clock steps
back); across processes the random parts keep them apart. Fixed-width lowercase
hex, so string order is time order.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

_COUNTER_MASK = (1 << 48) - 1

_counter = 0
_last_ms = -1
_prefix = ""
_node = ""
_now = datetime.fromtimestamp(0, timezone.utc)


def _reseed() -> None:
    global _counter, _last_ms, _node
    node = int.from_bytes(os.urandom(4), "big") >> 6  # 26 bits
    _node = f"7{node >> 14:03x}-{0x8000 | (node & 0x3FFF):04x}-"
    _counter = int.from_bytes(os.urandom(6), "big") >> 2  # below 2**46: far from wrapping
    _last_ms = -1


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_event_id() -> str:
    """A new UUIDv7 string, e.g. ``01938a5e-7c1f-7a3b-9c2d-4e5f60718293``."""
    return new_event_id_and_time()[0]


def new_event_id_and_time(_time_ns: Any = time.time_ns) -> tuple[str, datetime]:
    """A new event id, and the time (UTC, to the millisecond) that it encodes."""
    global _counter, _last_ms, _prefix, _now
    ms = _time_ns() // 1_000_000
    if ms > _last_ms:  # a new millisecond; if the clock stepped back, keep the old prefix
        _last_ms = ms
        _prefix = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-{_node}"
        _now = datetime.fromtimestamp(ms / 1000, timezone.utc)
    _counter = (_counter + 1) & _COUNTER_MASK
    return f"{_prefix}{_counter:012x}", _now


def event_id_time(event_id: str) -> float:
    """The Unix time (seconds, millisecond precision) encoded in a UUIDv7 *event_id*."""
    return int(event_id[:8] + event_id[9:13], 16) / 1000


# -- ids that travel: a stored event re-sent under its own id, and the id of the
# -- event whose handlers are running (the outbox relay and the idempotent inbox)

_resending: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "eventcore_resending", default=None
)
_handling: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "eventcore_handling", default=None
)
#: whether the transports give handlers their event's id (set once an inbox exists)
_tracking = False


def outgoing_event_id() -> str:
    """The id a transport sends the event being published under: the one pinned by
    :func:`resending` (the outbox relay re-sends a stored event), else a new one."""
    pinned = _resending.get()
    return new_event_id() if pinned is None else pinned


def pinned_event_id() -> str | None:
    """The id pinned by :func:`resending` in this context, or None."""
    return _resending.get()


@contextmanager
def resending(event_id: str) -> Iterator[None]:
    """Publish the events of this block under *event_id* (brokers deduplicate it)."""
    token = _resending.set(event_id)
    try:
        yield
    finally:
        _resending.reset(token)


def track_event_ids() -> None:
    """Make the transports give every handler its event's id (:func:`current_event_id`)."""
    global _tracking
    _tracking = True


def tracked_id(event_id: str | None) -> str | None:
    """*event_id* if handlers need it (see :func:`track_event_ids`), else None."""
    return event_id if _tracking else None


def handling_context(context: contextvars.Context, event_id: str) -> None:
    """Record in *context* that its handlers handle the event *event_id*."""
    context.run(_handling.set, event_id)


def current_event_id() -> str | None:
    """The wire id of the routed event whose handlers run in this context, or None."""
    return _handling.get()
