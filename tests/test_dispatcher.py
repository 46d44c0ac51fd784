"""The Dispatcher facade: lifecycle, shutdown, bad input, settings, threads, stats."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from eventcore import (
    Dispatcher,
    DispatcherClosed,
    DropReason,
    InvalidConfiguration,
    InvalidEvent,
    Overflow,
    TypeConfig,
)

from .events import Base, Child, GrandChild, Other

pytestmark = pytest.mark.anyio


async def test_publish_before_start_and_after_close_raises() -> None:
    bus = Dispatcher()
    with pytest.raises(DispatcherClosed, match="async with"):
        await bus.publish(Base(1))
    with pytest.raises(DispatcherClosed):
        bus.publish_nowait(Base(1))
    with pytest.raises(DispatcherClosed):
        await bus.drain()
    async with bus:
        running_inside = bus.running
        await bus.publish(Base(1))
    assert (running_inside, bus.running) == (True, False)
    with pytest.raises(DispatcherClosed, match="closed"):
        await bus.publish(Base(2))
    with pytest.raises(DispatcherClosed):
        await bus.publish_and_wait(Base(2))


async def test_leaving_async_with_drains_accepted_events() -> None:
    bus = Dispatcher(queue_size=10_000)
    seen: list[int] = []

    @bus.on(Base)
    async def slow(event: Base) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(event.n)

    async with bus:
        for n in range(500):
            bus.publish_nowait(Base(n))
    assert seen == list(range(500))
    assert bus.stats(Base).handled == 500


async def test_shutdown_timeout_reports_what_was_not_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops: list[tuple[object, DropReason]] = []
    bus = Dispatcher(shutdown_timeout=0.05, on_drop=lambda e, r: drops.append((e, r)))

    @bus.on(Base)
    async def hang(event: Base) -> None:
        await anyio.sleep_forever()

    async def waiter() -> None:
        outcome = await bus.publish_and_wait(Base(3))
        assert outcome.dropped is DropReason.SHUTDOWN

    async with anyio.create_task_group() as tg, bus:
        for n in range(3):
            await bus.publish(Base(n))
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
    assert sorted(e.n for e, _ in drops) == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert {r for _, r in drops} == {DropReason.SHUTDOWN}
    stats = bus.stats(Base)
    assert (stats.accepted, stats.abandoned, stats.handled, stats.queued) == (4, 4, 0, 0)
    assert "4 accepted event(s) were not handled" in caplog.text


async def test_blocked_publisher_gets_dispatcher_closed_at_shutdown() -> None:
    bus = Dispatcher(queue_size=1, shutdown_timeout=0.05, on_drop=lambda e, r: None)

    @bus.on(Base)
    async def hang(event: Base) -> None:
        await anyio.sleep_forever()

    errors: list[BaseException] = []
    async with anyio.create_task_group() as tg, bus:
        await bus.publish(Base(0))
        await anyio.wait_all_tasks_blocked()
        await bus.publish(Base(1))

        async def blocked() -> None:
            try:
                await bus.publish(Base(2))
            except DispatcherClosed as exc:
                errors.append(exc)

        tg.start_soon(blocked)
        await anyio.wait_all_tasks_blocked()
    assert len(errors) == 1
    assert bus.stats(Base).refused == 1


async def test_handlers_may_publish_while_closing_but_others_may_not() -> None:
    bus = Dispatcher()
    seen: list[object] = []
    refused: list[BaseException] = []

    @bus.on(Base)
    async def chain(event: Base) -> None:
        seen.append(event)
        if event.n < 3:
            await bus.publish(Base(event.n + 1))

    async with anyio.create_task_group() as tg:
        async with bus:
            await bus.publish(Base(0))

        async def late() -> None:
            try:
                await bus.publish(Other(1))
            except DispatcherClosed as exc:
                refused.append(exc)

        tg.start_soon(late)
    assert seen == [Base(0), Base(1), Base(2), Base(3)]
    assert len(refused) == 1


async def test_dispatcher_can_run_again_but_not_twice_at_once() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(event.n)

    async with bus:
        with pytest.raises(RuntimeError, match="already running"):
            await bus.__aenter__()
        await bus.publish(Base(1))
    async with bus:
        await bus.publish(Base(2))
    assert seen == [1, 2]


@pytest.mark.parametrize(
    "bad",
    [None, Base, 5, "text", {"type": "order"}, [1]],
    ids=["none", "class", "int", "str", "dict", "list"],
)
async def test_publishing_a_non_event_raises_invalid_event(bad: object) -> None:
    bus = Dispatcher()
    async with bus:
        with pytest.raises(InvalidEvent, match="publish\\(\\) takes an event"):
            await bus.publish(bad)
        with pytest.raises(TypeError):
            bus.publish_nowait(bad)
    assert bus.stats() == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue_size": 0},
        {"queue_size": -1},
        {"queue_size": 1.5},
        {"queue_size": True},
        {"concurrency": 0},
        {"concurrency": "4"},
        {"overflow": "block"},
        {"shutdown_timeout": -1},
        {"shutdown_timeout": float("nan")},
        {"max_idle_workers": -1},
        {"max_idle_workers": 2.0},
    ],
)
def test_invalid_settings_raise_invalid_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfiguration):
        Dispatcher(**kwargs)  # type: ignore[arg-type]
    configure_kwargs = {k: v for k, v in kwargs.items() if k in TypeConfig.__dataclass_fields__}
    if configure_kwargs:
        with pytest.raises(ValueError, match="must be"):
            Dispatcher().configure(Base, **configure_kwargs)  # type: ignore[arg-type]


async def test_invalid_publish_timeout_is_refused() -> None:
    bus = Dispatcher(queue_size=1)
    gate = anyio.Event()

    @bus.on(Base)
    async def hold(event: Base) -> None:
        await gate.wait()

    async with bus:
        await bus.publish(Base(0))
        await anyio.wait_all_tasks_blocked()
        await bus.publish(Base(1))
        with pytest.raises(InvalidConfiguration, match="timeout"):
            await bus.publish(Base(2), timeout=-5)
        gate.set()


def test_configure_applies_to_subclasses_without_settings_of_their_own() -> None:
    bus = Dispatcher(queue_size=8)
    bus.configure(Base, concurrency=4)
    bus.configure(Child, overflow=Overflow.DROP_OLDEST)
    assert bus.config(Base) == TypeConfig(8, 4, Overflow.BLOCK)
    assert bus.config(GrandChild) == TypeConfig(8, 4, Overflow.DROP_OLDEST)
    assert bus.config(Other) == TypeConfig(8, 1, Overflow.BLOCK)
    with pytest.raises(InvalidEvent):
        bus.configure(Base(1), concurrency=2)  # type: ignore[arg-type]


async def test_publish_from_other_threads() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(event.n)

    with pytest.raises(DispatcherClosed):
        bus.publish_threadsafe(Base(0))
    async with bus:
        # a worker thread of the loop
        await anyio.to_thread.run_sync(bus.publish_threadsafe, Base(1))
        # a plain thread the loop knows nothing about
        thread = threading.Thread(target=bus.publish_threadsafe, args=(Base(2),))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        with pytest.raises(RuntimeError):
            bus.publish_threadsafe(Base(3))  # the loop's own thread must use publish
    assert seen == [1, 2]


async def test_stats_identities_hold() -> None:
    bus = Dispatcher(queue_size=2, on_drop=lambda e, r: None, on_error=lambda e, h, x: None)
    bus.configure(Child, overflow=Overflow.DROP_NEWEST)
    bus.configure(GrandChild, overflow=Overflow.DROP_OLDEST)
    gate = anyio.Event()

    @bus.on(Base)
    async def handler(event: Base) -> None:
        await gate.wait()
        if event.n % 3 == 0:
            raise ValueError

    async with bus:
        for n in range(10):
            for cls in (Child, GrandChild):
                await bus.publish(cls(n))
        gate.set()
    for stats in bus.stats().values():
        assert stats.published == 10
        assert stats.published == stats.accepted + stats.dropped + stats.refused
        assert stats.accepted == (
            stats.handled + stats.queued + stats.in_flight + stats.evicted + stats.abandoned
        )
    # publish does not yield while there is room, so no worker ran before the loop ended
    assert bus.stats(Child).dropped == 8
    assert bus.stats(GrandChild).evicted == 8
    assert bus.stats(Other).published == 0
