"""The receipt ledger: every message fetched in this process and not yet settled
on its broker, written once for every transport.

A receipt's life in the ledger::

    hold(key, receipt)            fetched: held (kept alive, given back at close)
    settle(key, verdict, note)    its verdict is queued for the settler (once;
                                  a second verdict for the same key is ignored)
    take() -> [Settlement]        the settler sends the queued verdicts in a batch
    done(key)                     the broker has it: forgotten
    put_back(batch)               the batch failed: queued again, in front
    drop(key)                     forgotten without a verdict (left to the broker)

``key`` is whatever names the message on its broker (JetStream: the receipt
itself; Redis: ``(stream, entry id)``). A receipt stays *held* until ``done`` or
``drop``, also while its verdict waits to be sent, so the keep-alive goes on
refreshing it and a rebalance knows it is still in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Generic, NamedTuple, TypeVar

from ..._transport import Verdict

R = TypeVar("R")


class Settlement(NamedTuple, Generic[R]):
    """One queued verdict: the message's key, its receipt, the verdict and a note
    (why it is refused, for its dead letter)."""

    key: Hashable
    receipt: R
    verdict: Verdict
    note: str


class _Held(Generic[R]):
    __slots__ = ("receipt", "refreshed", "settled")

    def __init__(self, receipt: R, now: float) -> None:
        self.receipt = receipt
        self.refreshed = now
        self.settled = False


class Ledger(Generic[R]):
    """The receipts held by one open transport and the verdicts waiting to be sent
    (see the module doc). Runs on one event loop; never awaits."""

    def __init__(self) -> None:
        self._held: dict[Hashable, _Held[R]] = {}
        self._queued: deque[Settlement[R]] = deque()
        #: set while verdicts are queued (the settler waits on it)
        self.wanted = asyncio.Event()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: Hashable, receipt: R) -> None:
        """Record a fetched message (a key held already keeps its receipt)."""
        if key not in self._held:
            self._held[key] = _Held(receipt, time.monotonic())

    def holds(self, key: Hashable) -> bool:
        """Whether the message named *key* is held here (fetched, not yet done)."""
        return key in self._held

    def held(self) -> list[Hashable]:
        """The keys of every held message."""
        return list(self._held)

    def settle(self, key: Hashable, verdict: Verdict, note: str = "") -> bool:
        """Queue *verdict* for the message named *key*; False if it is not held or
        was settled already (the verdict is then ignored)."""
        held = self._held.get(key)
        if held is None or held.settled:
            return False
        held.settled = True
        self._queued.append(Settlement(key, held.receipt, verdict, note))
        self.wanted.set()
        return True

    @property
    def queued(self) -> int:
        """How many verdicts wait to be sent."""
        return len(self._queued)

    def take(self, limit: int | None = None) -> list[Settlement[R]]:
        """The queued verdicts (at most *limit*), oldest first, for one batch."""
        if limit is None or limit >= len(self._queued):
            batch = list(self._queued)
            self._queued.clear()
        else:
            batch = [self._queued.popleft() for _ in range(limit)]
        if not self._queued:
            self.wanted.clear()
        return batch

    def put_back(self, batch: Iterable[Settlement[R]]) -> None:
        """Queue again, in front, the verdicts of *batch* whose messages are still held."""
        again = [s for s in batch if s.key in self._held]
        self._queued.extendleft(reversed(again))
        if self._queued:
            self.wanted.set()

    def done(self, key: Hashable) -> None:
        """The broker has the verdict of *key*: forget it."""
        self._held.pop(key, None)

    def drop(self, key: Hashable) -> None:
        """Forget *key* without sending a verdict (its broker redelivers it)."""
        self._held.pop(key, None)

    def stale(self, age: float) -> list[tuple[Hashable, R]]:
        """The held messages not refreshed for *age* seconds, marked refreshed now
        (for the keep-alive)."""
        now = time.monotonic()
        out = []
        for key, held in self._held.items():
            if now - held.refreshed >= age:
                held.refreshed = now
                out.append((key, held.receipt))
        return out

    def unsettled(self) -> list[tuple[Hashable, R]]:
        """The held messages that have no verdict yet."""
        return [(key, held.receipt) for key, held in self._held.items() if not held.settled]

    def clear(self) -> None:
        """Forget everything (the transport closed)."""
        self._held.clear()
        self._queued.clear()
        self.wanted.clear()
