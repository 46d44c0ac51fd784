"""What a type counts: accepted, handled, lost, failed, in flight (a part of its state)."""

from __future__ import annotations

#: the counters a type keeps across the retirement of its state
COUNTERS = ("accepted", "handled", "dropped", "refused", "evicted", "failed", "abandoned")


class Counters:
    """The counters of one event type; only these methods change them.

    Events in flight are not counted apart: they are the accepted events that are
    neither queued (the queue's count), handled, evicted nor abandoned (see
    ``TypeState.in_flight``), so no transition has two counts to keep in step.
    """

    __slots__ = (
        "abandoned",
        "accepted",
        "dropped",
        "evicted",
        "failed",
        "handled",
        "refused",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.handled = 0
        self.dropped = 0
        self.refused = 0
        self.evicted = 0
        self.failed = 0
        self.abandoned = 0

    def accept(self, count: int = 1) -> None:
        """*count* events entered the queue."""
        self.accepted += count

    def unaccept(self) -> None:
        """A cancelled publisher took its event back out: it never entered."""
        self.accepted -= 1

    def finish(self) -> None:
        """An event's handling ended: every matching handler ran."""
        self.handled += 1

    def cut_off(self) -> None:
        """An event's handling was cut off by shutdown."""
        self.abandoned += 1

    def evict(self) -> None:
        """DROP_OLDEST took a waiting event out."""
        self.evicted += 1

    def abandon(self, count: int) -> None:
        """Shutdown took *count* waiting events out."""
        self.abandoned += count

    def drop(self) -> None:
        """An event was refused without an error (DROP_NEWEST, a middleware)."""
        self.dropped += 1

    def refuse(self, count: int = 1) -> None:
        """A publish raised: the queue was full, a timeout, the policy, a key, closing."""
        self.refused += count

    def fail(self) -> None:
        """A handler (or a filter, or a key function) failed for good on an event."""
        self.failed += 1

    def leave(self) -> dict[str, int]:
        """What a retired state leaves behind (see ``_table``: nothing pinned)."""
        return {name: getattr(self, name) for name in COUNTERS}

    def restore(self, counters: dict[str, int]) -> None:
        """Continue the counters of a retired state of the same type."""
        self.accepted = counters["accepted"]
        self.handled = counters["handled"]
        self.dropped = counters["dropped"]
        self.refused = counters["refused"]
        self.evicted = counters["evicted"]
        self.failed = counters["failed"]
        self.abandoned = counters["abandoned"]

    def in_flight(self, queued: int) -> int:
        """Accepted events being handled, given how many are *queued*."""
        return self.accepted - self.handled - queued - self.evicted - self.abandoned

    def check(self) -> list[str]:
        """The counters' invariants; an empty list when they hold."""
        return [f"{name} < 0" for name in COUNTERS if getattr(self, name) < 0]
