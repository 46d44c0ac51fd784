"""The id of an event that a relay hands to in-memory handlers, found by the event
object (in memory the handlers get the very object the relay published)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: id(event object) -> (the event, its id), while the relay waits for its handlers
_relayed: dict[int, tuple[Any, str]] = {}


@contextmanager
def relayed(event: Any, event_id: str) -> Iterator[None]:
    """While the block runs (the relay waits for *event*'s handlers), they know
    *event_id*. If the block ends early (the relay was cancelled while the event
    stays queued, to be handled at the dispatcher's drain) the entry stays, with the
    event, so that its handlers still find it (and no other object takes its id)."""
    _relayed[id(event)] = (event, event_id)
    try:
        yield
    except Exception:  # not accepted: nothing will be handled
        _relayed.pop(id(event), None)
        raise
    _relayed.pop(id(event), None)


def event_id_of(event: Any) -> str | None:
    """The id of *event* if an outbox relay is handing it to handlers, else None."""
    found = _relayed.get(id(event))
    return None if found is None or found[0] is not event else found[1]
