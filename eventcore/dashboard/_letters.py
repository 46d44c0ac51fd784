"""The dead letters a dashboard keeps: the most recent ones, and a count per (type,
reason) since it started with the newest of each, so that a flood of one kind
(evictions under load) never hides another (failed payments)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .._deadletters import DeadLetter

#: how many characters of a redacted-or-not payload are shown
PAYLOAD_CHARS = 2000
#: (type, reason) groups counted at most; dead letters of later ones are only listed
MAX_GROUPS = 256
#: reasons that mean a handler failed: listed before load shedding (evictions, drops)
FAILURES = ("handler_failed", "delivery_limit", "undecodable")


@dataclass
class Letter:
    """A dead letter the dashboard keeps, with the id actions name it by."""

    id: int
    letter: DeadLetter
    at: float


@dataclass
class _Group:
    count: int
    latest: Letter | None  # None once replayed or discarded


class LetterBook:
    """The kept dead letters: the *size* most recent, and the groups.

    :ivar version: changes whenever what :meth:`recent` or :meth:`groups` shows does
    """

    def __init__(self, size: int) -> None:
        self.recent_letters: deque[Letter] = deque(maxlen=size)
        self.version = 0
        self._groups: dict[tuple[str, str], _Group] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self.recent_letters)

    def keep(self, letter: DeadLetter) -> None:
        """Keep *letter* (the newest) and count it in its group."""
        kept = Letter(next(self._ids), letter, time.time())
        self.recent_letters.append(kept)
        key = (type(letter.event).__qualname__, letter.reason.value)
        group = self._groups.get(key)
        if group is not None:
            group.count += 1
            group.latest = kept
        elif len(self._groups) < MAX_GROUPS:
            self._groups[key] = _Group(1, kept)
        self.version += 1

    def find(self, wanted: int) -> Letter | None:
        """The kept dead letter with id *wanted*: a recent one, or the newest of a group."""
        for kept in self.recent_letters:
            if kept.id == wanted:
                return kept
        latest = (group.latest for group in self._groups.values())
        return next((kept for kept in latest if kept is not None and kept.id == wanted), None)

    def remove(self, kept: Letter) -> None:
        """Forget *kept* (replayed or discarded); its group's count stays."""
        if kept in self.recent_letters:
            self.recent_letters.remove(kept)
        for group in self._groups.values():
            if group.latest is kept:
                group.latest = None
        self.version += 1

    def recent(self, payloads: bool) -> list[dict[str, Any]]:
        """The recent dead letters, newest first (redacted unless *payloads*)."""
        return [described(kept, payloads) for kept in reversed(self.recent_letters)]

    def groups(self, payloads: bool) -> list[dict[str, Any]]:
        """The dead letters per (type, reason) since start: failures first, then the
        most frequent; each with its count and its newest letter."""
        ranked = sorted(
            self._groups.items(),
            key=lambda item: (item[0][1] not in FAILURES, -item[1].count, item[0]),
        )
        return [
            {
                "type": name,
                "reason": reason,
                "count": group.count,
                "latest": None if group.latest is None else described(group.latest, payloads),
            }
            for (name, reason), group in ranked
        ]


def described(kept: Letter, payloads: bool) -> dict[str, Any]:
    """What the page shows of *kept* (its event and message only with *payloads*)."""
    letter = kept.letter
    exc = letter.exception
    return {
        "id": kept.id,
        "at": round(kept.at, 3),
        "type": type(letter.event).__qualname__,
        "reason": letter.reason.value,
        "attempts": letter.attempts,
        "error": None if exc is None else type(exc).__name__,
        "message": (str(exc)[:PAYLOAD_CHARS] if payloads else None) if exc is not None else None,
        "payload": repr(letter.event)[:PAYLOAD_CHARS] if payloads else None,
    }
