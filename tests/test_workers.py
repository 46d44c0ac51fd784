"""Worker groups: concurrency limit, ordering, lazy start, idle bound, deadlock escape."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from eventcore import Dispatcher, Overflow

from .events import Base, Child, Other

pytestmark = pytest.mark.anyio


class Meter:
    """Counts handler invocations running at the same time."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.seen: list[int] = []

    async def __call__(self, event: Base) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.seen.append(event.n)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        self.running -= 1


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_concurrency_limit_is_reached_and_never_exceeded(concurrency: int) -> None:
    meter = Meter()
    bus = Dispatcher(concurrency=concurrency)
    bus.subscribe(Base, meter)
    async with bus:
        for n in range(50):
            await bus.publish(Base(n))
    assert meter.peak == concurrency
    assert sorted(meter.seen) == list(range(50))


async def test_concurrency_one_keeps_accepted_order() -> None:
    meter = Meter()
    bus = Dispatcher(queue_size=4)
    bus.subscribe(Base, meter)
    async with bus, anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(bus.publish, Base(n))  # contended: many blocked publishers
    assert meter.peak == 1
    assert sorted(meter.seen) == list(range(100))
    # each publisher publishes once; order of a single publisher is checked below
    one: list[int] = []

    async def record(event: Base) -> None:
        one.append(event.n)
        await anyio.lowlevel.checkpoint()

    bus = Dispatcher(queue_size=3)
    bus.subscribe(Base, record)
    async with bus:
        for n in range(40):
            await bus.publish(Base(n))
    assert one == list(range(40))


async def test_workers_start_lazily_and_idle_ones_are_bounded() -> None:
    bus = Dispatcher(max_idle_workers=4)
    handled = 0
    types = [type(f"T{i}", (Base,), {}) for i in range(50)]

    async def handler(event: Base) -> None:
        nonlocal handled
        handled += 1

    bus.subscribe(Base, handler)
    async with bus:
        await anyio.wait_all_tasks_blocked()
        baseline = len(anyio.get_running_tasks())
        for t in types:
            await bus.publish(t(1))
        await bus.drain()
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) <= baseline + 4
        for t in types:  # parked or retired workers come back on demand
            await bus.publish(t(2))
    assert handled == 100


async def test_handler_may_publish_into_its_own_full_queue() -> None:
    """Contract 8: concurrency 1, queue_size 1, every handler publishes two follow-ons."""
    bus = Dispatcher(queue_size=1)
    seen: list[int] = []

    @bus.on(Base)
    async def fan_out(event: Base) -> None:
        seen.append(event.n)
        if event.n < 64:
            await bus.publish(Base(2 * event.n))
            await bus.publish(Base(2 * event.n + 1))

    async with bus:
        with anyio.fail_after(10):
            await bus.publish(Base(1))
            await bus.drain()
    assert sorted(seen) == list(range(1, 128))
    assert bus.stats(Base).handled == 127


async def test_cross_type_cycle_through_full_queues_does_not_deadlock() -> None:
    bus = Dispatcher(queue_size=1)
    seen: list[str] = []

    @bus.on(Child)
    async def ping(event: Child) -> None:
        seen.append(f"child{event.n}")
        if event.n < 20:
            await bus.publish(Other(event.n + 1))
            await bus.publish(Other(event.n + 1))

    @bus.on(Other)
    async def pong(event: Other) -> None:
        seen.append(f"other{event.n}")
        if event.n < 20:
            await bus.publish(Child(event.n + 1))

    async with bus:
        with anyio.fail_after(10):
            await bus.publish(Child(0))
            await bus.drain()
    assert seen.count("other19") == seen.count("child20") == 2**10


async def test_handler_may_wait_for_an_event_of_its_own_type() -> None:
    bus = Dispatcher()
    results: list[object] = []

    @bus.on(Base)
    async def nested(event: Base) -> int:
        if event.n > 0:
            outcome = await bus.publish_and_wait(Base(event.n - 1))
            results.append(outcome.results[0].value)
        return event.n

    async with bus:
        with anyio.fail_after(10):
            outcome = await bus.publish_and_wait(Base(3))
    assert outcome.results[0].value == 3
    assert results == [0, 1, 2]


async def test_blocked_publisher_from_another_type_feels_backpressure() -> None:
    """A handler that blocks on a busy (not deadlocked) type keeps its slot."""
    bus = Dispatcher(queue_size=1)
    release = anyio.Event()
    upstream: list[int] = []

    @bus.on(Other)
    async def slow(event: Other) -> None:
        await release.wait()

    @bus.on(Base)
    async def forward(event: Base) -> None:
        upstream.append(event.n)
        await bus.publish(Other(event.n))

    async with bus:
        for n in range(4):
            bus.publish_nowait(Base(n)) if n == 0 else await bus.publish(Base(n), timeout=1)
            await anyio.wait_all_tasks_blocked()
        # Other: one in the handler, one queued; Base's worker blocked on Other; one Base queued
        assert upstream == [0, 1, 2]
        assert bus.stats(Base).queued == 1
        release.set()
    assert upstream == [0, 1, 2, 3]


async def test_configure_while_running_applies_to_new_events() -> None:
    meter = Meter()
    bus = Dispatcher()
    bus.subscribe(Base, meter)
    async with bus:
        bus.configure(Base, concurrency=4, overflow=Overflow.DROP_NEWEST)
        for n in range(20):
            await bus.publish(Base(n))
    assert meter.peak == 4


async def test_many_types_share_a_few_workers() -> None:
    """1,000 types published round-robin are served without a task per type."""
    bus = Dispatcher()
    types = [type(f"Many{i}", (Base,), {}) for i in range(1000)]
    tasks_seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        tasks_seen.append(len(anyio.get_running_tasks()))

    async with bus:
        await anyio.wait_all_tasks_blocked()
        baseline = len(anyio.get_running_tasks())
        for n in range(3):
            for t in types:
                await bus.publish(t(n))
        await bus.drain()
    assert len(tasks_seen) == 3000
    assert max(tasks_seen) <= baseline + 2  # the worker, and at most one starting
