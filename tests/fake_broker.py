"""Brokers in memory for the seam's tests.

* :class:`FakeBroker`: one stream, durable once ``send`` returns, a bounded
  backlog, fetches that never take more than the room they are given, and one
  receipt per fetched event that records its verdicts;
* :class:`FakeHub`: streams per consumer group shared by several dispatchers, the
  messages encoded as on the wire (the fake broker of the broker contract suite).
"""

from __future__ import annotations

from collections import Counter, deque
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


# -- a broker of streams and consumer groups, for the broker contract suite -------------


class _GroupStream:
    """One consumer group's copy of a namespace's messages (encoded, as on the wire)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.pending: deque[bytes] = deque()
        self.in_flight = 0
        self.waiting: list[anyio.Event] = []

    def full(self) -> bool:
        return self.capacity is not None and len(self.pending) + self.in_flight >= self.capacity

    def arrived(self) -> None:
        for event in self.waiting:
            event.set()
        self.waiting.clear()


class FakeHub:
    """Streams in memory shared by the transports of several dispatchers (the
    :class:`~tests.brokers.broker_contract.BrokerKit` of the fake broker): in each
    namespace, every consumer group gets a copy of what is published (the group
    ``publisher`` only publishes), kept until acknowledged; messages travel
    encoded, so the wire's errors happen as on a real broker."""

    def __init__(self) -> None:
        self.spaces: dict[str, dict[str, _GroupStream]] = {}

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        space = self.spaces.setdefault(namespace, {})
        if group != "publisher" and group not in space:
            space[group] = _GroupStream(capacity)
        return FakeGroupTransport(space, group, capacity)

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        for stream in self.spaces.get(namespace, {}).values():
            stream.pending.append(data)
            stream.arrived()

    def cleanup(self, namespace: str) -> None:
        self.spaces.pop(namespace, None)


class _GroupReceipt:
    def __init__(self, stream: _GroupStream, data: bytes) -> None:
        self.stream = stream
        self.data = data
        self.settled = False

    def settle(self, verdict: Verdict) -> None:
        if self.settled:
            return
        self.settled = True
        self.stream.in_flight -= 1
        if verdict is Verdict.SHUTDOWN:  # given back: redelivered first
            self.stream.pending.appendleft(self.data)
            self.stream.arrived()


class FakeGroupTransport:
    """One dispatcher's transport on a :class:`FakeHub` namespace, as *group*."""

    def __init__(self, space: dict[str, _GroupStream], group: str, capacity: int | None) -> None:
        self.space = space
        self.group = group
        self.capacity = capacity
        self.bus: Any = None
        self.codec: Any = None

    async def open(self, bus: Any) -> None:
        from eventcore.wire import Codec

        self.bus, self.codec = bus, Codec.for_dispatcher(bus)

    async def send(
        self, event_type: type, event: Any, *, deadline: float | None = None, principal: Any = None
    ) -> None:
        await anyio.lowlevel.checkpoint()
        key_of = self.bus.config(event_type).key
        key = None if key_of is None else key_of(event)
        data = self.codec.encode(event, event_type=event_type, key=key, principal=principal)
        streams = list(self.space.values())
        if any(stream.full() for stream in streams):
            raise QueueFull("the stream is full", event_type)
        for stream in streams:
            stream.pending.append(data)
            stream.arrived()

    def source(self, event_type: type) -> Any:
        return _GroupSource(self, self.space[self.group], event_type)


class _GroupSource:
    def __init__(self, transport: FakeGroupTransport, stream: _GroupStream, event_type: type):
        self.transport = transport
        self.stream = stream
        self.event_type = event_type

    async def fetch(self, room: int) -> Sequence[tuple[Any, _GroupReceipt]]:
        """At most *room* messages of this source's type (a routed type travels on a
        stream of its own, as on a real broker: the other types' messages stay)."""
        from eventcore import DeadLetter, DeadLetterReason
        from eventcore.wire import WireError

        stream, bus = self.stream, self.transport.bus
        while True:
            out: list[tuple[Any, _GroupReceipt]] = []
            for data in list(stream.pending):
                if len(out) >= room:
                    break
                try:
                    event = self.transport.codec.decode(data).event
                except WireError as exc:
                    stream.pending.remove(data)
                    bus.report_dead_letter(DeadLetter(data, DeadLetterReason.UNDECODABLE, exc))
                    continue
                if type(event) is not self.event_type:
                    continue
                stream.pending.remove(data)
                stream.in_flight += 1
                out.append((event, _GroupReceipt(stream, data)))
            if out:
                return out
            arrived = anyio.Event()
            stream.waiting.append(arrived)
            await arrived.wait()
