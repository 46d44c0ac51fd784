"""Bounded queues and the four overflow policies."""

from __future__ import annotations

import anyio
import pytest

from eventcore import (
    Dispatcher,
    DropReason,
    Overflow,
    PublishTimeout,
    QueueFull,
)

from .events import Base

pytestmark = pytest.mark.anyio


class Gate:
    """A handler that records events and holds each one until the test opens the gate."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.open = anyio.Event()

    async def __call__(self, event: Base) -> None:
        self.seen.append(event.n)
        await self.open.wait()


async def fill(bus: Dispatcher, gate: Gate, queue_size: int) -> None:
    """Publish event 0 (taken by the worker and held) and then queue_size more."""
    await bus.publish(Base(0))
    await anyio.wait_all_tasks_blocked()
    assert gate.seen == [0]
    for n in range(1, queue_size + 1):
        assert await bus.publish(Base(n))
    assert bus.stats(Base).queued == queue_size


async def test_block_waits_for_room_and_keeps_the_bound() -> None:
    gate = Gate()
    bus = Dispatcher(queue_size=2)
    bus.subscribe(Base, gate)
    async with bus, anyio.create_task_group() as tg:
        await fill(bus, gate, 2)
        done = anyio.Event()

        async def publisher() -> None:
            await bus.publish(Base(3))
            done.set()

        tg.start_soon(publisher)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()  # blocked: the queue is full
        assert bus.stats(Base).queued == 2
        gate.open.set()
        await done.wait()
    assert gate.seen == [0, 1, 2, 3]


async def test_block_timeout_raises_publish_timeout_and_counts_it() -> None:
    gate = Gate()
    bus = Dispatcher(queue_size=1)
    bus.subscribe(Base, gate)
    async with bus:
        await fill(bus, gate, 1)
        with pytest.raises(PublishTimeout, match=r"Base.*queue_size=1") as info:
            await bus.publish(Base(2), timeout=0.01)
        assert info.value.event_type is Base
        assert isinstance(info.value, TimeoutError)
        gate.open.set()
    stats = bus.stats(Base)
    assert (stats.accepted, stats.refused, stats.handled) == (2, 1, 2)
    assert gate.seen == [0, 1]


async def test_cancelled_blocked_publisher_passes_its_wakeup_on() -> None:
    gate = Gate()
    bus = Dispatcher(queue_size=1)
    bus.subscribe(Base, gate)
    async with bus, anyio.create_task_group() as tg:
        await fill(bus, gate, 1)
        with anyio.CancelScope() as doomed_scope:
            doomed_scope.cancel()
            await bus.publish(Base(99))  # cancelled while it waits for room
        tg.start_soon(bus.publish, Base(2))
        await anyio.wait_all_tasks_blocked()
        gate.open.set()
    assert gate.seen == [0, 1, 2]


async def test_drop_newest_refuses_and_reports() -> None:
    gate = Gate()
    drops: list[tuple[object, DropReason]] = []
    bus = Dispatcher(queue_size=2, on_drop=lambda e, r: drops.append((e, r)))
    bus.configure(Base, overflow=Overflow.DROP_NEWEST)
    bus.subscribe(Base, gate)
    async with bus:
        await fill(bus, gate, 2)
        assert await bus.publish(Base(3)) is False
        assert bus.publish_nowait(Base(4)) is False
        gate.open.set()
    assert gate.seen == [0, 1, 2]
    assert drops == [(Base(3), DropReason.DROPPED_NEWEST), (Base(4), DropReason.DROPPED_NEWEST)]
    stats = bus.stats(Base)
    assert (stats.accepted, stats.dropped, stats.published) == (3, 2, 5)


async def test_drop_oldest_evicts_the_oldest_queued_event() -> None:
    gate = Gate()
    drops: list[tuple[object, DropReason]] = []
    bus = Dispatcher(
        queue_size=2, overflow=Overflow.DROP_OLDEST, on_drop=lambda e, r: drops.append((e, r))
    )
    bus.subscribe(Base, gate)
    async with bus:
        await fill(bus, gate, 2)
        assert await bus.publish(Base(3)) is True
        assert bus.publish_nowait(Base(4)) is True
        assert bus.stats(Base).queued == 2
        gate.open.set()
    assert gate.seen == [0, 3, 4]
    assert drops == [(Base(1), DropReason.EVICTED), (Base(2), DropReason.EVICTED)]
    stats = bus.stats(Base)
    assert (stats.accepted, stats.evicted, stats.handled) == (5, 2, 3)


async def test_raise_policy_and_publish_nowait_under_block_raise_queue_full() -> None:
    gate = Gate()
    bus = Dispatcher(queue_size=1)
    bus.subscribe(Base, gate)
    async with bus:
        await fill(bus, gate, 1)
        with pytest.raises(QueueFull, match="publish_nowait never waits"):
            bus.publish_nowait(Base(2))
        bus.configure(Base, overflow=Overflow.RAISE)
        with pytest.raises(QueueFull, match="RAISE") as info:
            await bus.publish(Base(3))
        assert info.value.event_type is Base
        gate.open.set()
    assert gate.seen == [0, 1]
    assert bus.stats(Base).refused == 2
