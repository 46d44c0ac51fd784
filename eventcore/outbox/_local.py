"""The id of an event that a relay hands to in-memory handlers, found by the event
object (in memory the handlers get the very object the relay published)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: id(event object) -> event id, while the relay waits for its handlers
_relayed: dict[int, str] = {}


@contextmanager
def relayed(event: Any, event_id: str) -> Iterator[None]:
    """While the block runs (the relay holds *event*), its handlers know *event_id*."""
    _relayed[id(event)] = event_id
    try:
        yield
    finally:
        _relayed.pop(id(event), None)


def event_id_of(event: Any) -> str | None:
    """The id of *event* if an outbox relay is handing it to handlers, else None."""
    return _relayed.get(id(event))
