"""A broker in memory for the seam's tests: durable once ``send`` returns, a bounded
backlog, fetches that never take more than the room they are given, and one
receipt per fetched event that records its verdicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from eventcore import QueueFull, Verdict


@dataclass(frozen=True)
class Job:
    n: int
    fail: bool = False


@dataclass(frozen=True)
class Local:
    n: int


@dataclass
class FakeReceipt:
    broker: FakeBroker
    event: Any
    verdicts: list[Verdict] = field(default_factory=list)

    def settle(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        self.broker.in_flight -= 1
        self.broker.changed.set()


class FakeSource:
    def __init__(self, broker: FakeBroker, event_type: type = object) -> None:
        self.broker = broker
        self.event_type = event_type

    def _mine(self) -> list[Any]:
        return [e for e in self.broker.pending if isinstance(e, self.event_type)]

    async def fetch(self, room: int) -> Sequence[tuple[Any, FakeReceipt]]:
        assert room > 0, "asked to fetch into a full queue"
        self.broker.rooms.append(room)
        while not self._mine():
            arrived = anyio.Event()
            self.broker.waiting.append(arrived)
            await arrived.wait()
        batch = self._mine()[:room]
        for event in batch:
            self.broker.pending.remove(event)
        receipts = []
        for event in batch:
            receipt = FakeReceipt(self.broker, event)
            self.broker.receipts.append(receipt)
            self.broker.in_flight += 1
            receipts.append((event, receipt))
        self.broker.changed.set()
        return receipts


class FakeBroker:
    """A stream in memory: durable once ``send`` returns; a bounded backlog."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.pending: list[Any] = []
        self.sent: list[Any] = []
        self.receipts: list[FakeReceipt] = []
        self.rooms: list[int] = []
        self.in_flight = 0
        #: one event per waiting fetch, set when a message arrives
        self.waiting: list[anyio.Event] = []
        self.changed = anyio.Event()

    async def until(self, fetched: int) -> None:
        """Wait until *fetched* events were fetched and every fetched one settled."""
        while len(self.receipts) < fetched or self.in_flight:
            await self.changed.wait()
            self.changed = anyio.Event()

    async def send(self, event_type: type, event: Any) -> None:
        await anyio.lowlevel.checkpoint()
        if len(self.pending) >= self.capacity:
            raise QueueFull("the stream is full", event_type)
        self.pending.append(event)
        self.sent.append(event)
        for arrived in self.waiting:
            arrived.set()
        self.waiting.clear()

    def source(self, event_type: type) -> FakeSource:
        return FakeSource(self, event_type)

    def verdicts(self) -> Counter[Verdict]:
        return Counter(v for r in self.receipts for v in r.verdicts)
