"""The soak's ledger: every accepted event must reach a handler or a dead letter.

An event is known by its type and number, and one number may be accepted more
than once: a worker's Receipt carries its Order's number, and an Order delivered
twice (at least once: a publish retried after a lost connection stores it twice
without ``dedup``) publishes two Receipts, each of which must be handled. So the
ledger counts: each acceptance waits for an outcome of its own, each outcome
settles one acceptance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from .events import BY_NAME, NAMES

Key = tuple[str, int]


class Ledger:
    """Accepted events not yet accounted for: a handler began, or a dead letter.

    Bounded, so that the soak does not measure its own book-keeping: an acceptance
    leaves ``pending`` at the first outcome of its key; an outcome that comes first
    (a handler can begin before ``publish`` returns, or before the service reads the
    worker's journal that says it was accepted), or again (a redelivery, a failure
    after the start), waits in ``early`` for ``EARLY`` seconds. Both count: two
    outcomes that came first settle two acceptances of their key, not one.
    """

    EARLY = 60.0

    def __init__(self, journal: TextIO | None = None) -> None:
        #: per key, when each of its acceptances not yet accounted for came
        self.pending: dict[Key, list[float]] = {}
        #: per key, when each of its outcomes that no acceptance took yet came
        self.early: dict[Key, list[float]] = {}
        self.accepted = self.outcomes = 0
        self.journal = journal  # a worker's: it keeps nothing, the service reads the file
        self.offsets: dict[Path, int] = {}

    def accept(self, event: Any) -> None:
        self._accept((NAMES[type(event)], event.n))

    def see(self, event: Any) -> None:
        self._outcome("seen", (NAMES[type(event)], event.n))

    def bury(self, event: Any) -> None:
        if type(event) in NAMES:
            self._outcome("dead", (NAMES[type(event)], event.n))

    def _accept(self, key: Key) -> None:
        if self.journal is not None:
            self.journal.write(f"accepted {key[0]} {key[1]}\n")
            return
        self.accepted += 1
        if not _take(self.early, key):
            self.pending.setdefault(key, []).append(time.monotonic())

    def _outcome(self, kind: str, key: Key) -> None:
        if self.journal is not None:
            self.journal.write(f"{kind} {key[0]} {key[1]}\n")
            return
        self.outcomes += 1
        if not _take(self.pending, key):
            self.early.setdefault(key, []).append(time.monotonic())

    def expire(self) -> None:
        """Forget outcomes that waited ``EARLY`` seconds for an acceptance."""
        limit = time.monotonic() - self.EARLY
        for key in [k for k, times in self.early.items() if times[0] < limit]:
            kept = [at for at in self.early[key] if at >= limit]
            if kept:
                self.early[key] = kept
            else:
                del self.early[key]

    def follow(self, path: Path) -> None:
        """Apply the lines a worker added to its journal since the last call."""
        if not path.exists():
            return
        with path.open("rb") as journal:
            journal.seek(self.offsets.get(path, 0))
            chunk = journal.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offsets[path] = self.offsets.get(path, 0) + len(complete)
        for line in complete.decode().splitlines():
            kind, _, rest = line.partition(" ")
            name, _, number = rest.partition(" ")
            if name not in BY_NAME:
                continue
            if kind == "accepted":
                self._accept((name, int(number)))
            elif kind in ("seen", "dead"):
                self._outcome(kind, (name, int(number)))

    def lost(self) -> list[Key]:
        """Accepted events that no handler began and no dead letter reports (yet):
        a key once for each of its acceptances not accounted for."""
        return sorted(key for key, times in self.pending.items() for _ in times)


def _take(book: dict[Key, list[float]], key: Key) -> bool:
    """Take the oldest entry of *key* from *book*; whether it had one."""
    times = book.get(key)
    if not times:
        return False
    del times[0]
    if not times:
        del book[key]
    return True
