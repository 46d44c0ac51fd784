"""Safe retries of a publish: an event object whose publish failed (refused,
unconfirmed, cancelled) keeps its event id, so publishing the same object again,
by the transport's own retry or by the caller's, is sent under the same id and
the broker deduplicates it (JetStream ``Nats-Msg-Id``, the Redis transport's
``dedup`` keys). Remembered by the object's identity, for at most *window*
seconds and *size* objects."""

from __future__ import annotations

import time
from typing import Any

from ..._wire.ids import outgoing_event_id


class Attempt:
    """One event on its way: its id, and the destinations that stored it already."""

    __slots__ = ("event", "id", "since", "stored")

    def __init__(self, event: Any, event_id: str) -> None:
        self.event = event
        self.id = event_id
        self.since = time.monotonic()
        #: the destinations (groups, streams) that acknowledged it
        self.stored: set[str] = set()


class RetryIds:
    """The attempts of failed publishes, by the identity of their event object."""

    def __init__(self, window: float, size: int = 10_000) -> None:
        self.window = window
        self._size = size
        self._failed: dict[int, Attempt] = {}

    def attempt(self, event: Any) -> Attempt:
        """The attempt of *event*: the failed one to retry (same id, same stored
        destinations) while within the window, else a new one with a new id."""
        failed = self._failed.pop(id(event), None) if self._failed else None
        if (
            failed is None
            or failed.event is not event
            or time.monotonic() - failed.since > self.window
        ):
            return Attempt(event, outgoing_event_id())
        return failed

    def failed(self, attempt: Attempt) -> None:
        """Remember *attempt* for a retry of the same event object."""
        self._failed[id(attempt.event)] = attempt
        while len(self._failed) > self._size:
            del self._failed[next(iter(self._failed))]
