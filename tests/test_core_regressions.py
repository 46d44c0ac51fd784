"""Regressions of the core found in the third pass (issue 19), one test each."""

from __future__ import annotations

import dataclasses
import threading
import types

import anyio
import anyio.to_thread
import pytest

from eventcore import Dispatcher, HandlerTimeout, InvalidEvent, Lifecycle

from .events import Base, Other

pytestmark = pytest.mark.anyio

LIMIT = 10.0


async def test_a_plain_handler_publishing_threadsafe_into_its_own_full_queue_goes_on() -> None:
    """The thread's publish is its handler's wait: the deadlock escape lends the slot."""
    bus = Dispatcher(queue_size=1, concurrency=1, shutdown_timeout=1)
    started = threading.Event()
    go = threading.Event()
    seen: list[int] = []
    results: list[bool] = []

    @bus.on(Base)
    def handler(event: Base) -> None:
        seen.append(event.n)
        if event.n == 0:
            started.set()
            go.wait(LIMIT)
            results.append(bus.publish_threadsafe(Base(2)))  # the queue is full

    async with bus:
        await bus.publish(Base(0))
        await anyio.to_thread.run_sync(started.wait, LIMIT)
        await bus.publish(Base(1))  # fills the queue (size 1) behind the running handler
        go.set()
        with anyio.fail_after(LIMIT):
            await bus.drain()
    assert sorted(seen) == [0, 1, 2]
    assert results == [True]
    assert bus.stats(Base).handled == 3


async def test_an_abandoned_thread_keeps_its_place_after_the_type_went_idle() -> None:
    """A timed-out plain handler's thread still counts against ``concurrency`` when
    the table sweeps its idle type (the state must not be retired under it)."""
    bus = Dispatcher(concurrency=1)
    release = threading.Event()
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def slow(event: Base) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if event.n == 0:
                release.wait(LIMIT)  # a thread cannot be cancelled: it runs on
        finally:
            with lock:
                running[0] -= 1

    async def other(event: Other) -> None:
        pass

    bus.subscribe(Base, slow, timeout=0.05)
    with anyio.fail_after(LIMIT):
        async with bus:
            first = await bus.publish_and_wait(Base(0))
            assert isinstance(first.results[0].exception, HandlerTimeout)
            # two sweeps of the table: an idle state with nothing accepted between
            # them is retired
            bus.subscribe(Other, other)
            bus.subscribe(Other, other)
            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.publish_and_wait, Base(1))
                await anyio.sleep(0.1)
                assert running[0] == 1  # only the abandoned thread runs
                release.set()
    assert peak[0] == 1
    assert bus.stats(Base).handled == 2


async def test_leaving_twice_or_without_entering_does_nothing() -> None:
    heard: list[Lifecycle] = []
    bus = Dispatcher(on_lifecycle=heard.append)
    await bus.__aexit__(None, None, None)  # never entered
    async with bus:
        await bus.publish(Base(1))
    await bus.__aexit__(None, None, None)  # left already
    assert heard == [Lifecycle.STARTED, Lifecycle.DRAINING, Lifecycle.STOPPED]
    assert bus.stats(Base).accepted == bus.stats(Base).handled == 1  # nothing lost
    async with bus:  # and it can run again
        assert bus.running


async def test_classes_made_by_make_dataclass_are_events() -> None:
    made = dataclasses.make_dataclass("Made", [("n", int)])
    created = types.new_class("Created")
    bus = Dispatcher()
    seen: list[object] = []

    async def handler(event: object) -> None:
        seen.append(event)

    bus.subscribe(made, handler)
    bus.subscribe(created, handler)
    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(made(1))
            await bus.publish(created())
            await bus.drain()
    assert [type(event) for event in seen] == [made, created]
    with pytest.raises(InvalidEvent):
        bus.subscribe(types.SimpleNamespace, handler)  # the types module's own stays refused
