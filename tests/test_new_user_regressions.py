"""Regressions found by a new user trying eventcore, one test each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from eventcore import (
    Dispatcher,
    DispatcherClosed,
    EventcoreError,
    InvalidEvent,
    InvalidHandler,
    LifecycleMisuse,
)
from eventcore._demo import COLUMNS, POLICIES, DemoReport, ReceiptSent, build, rows

from .events import Base

LIMIT = 10.0


@pytest.mark.anyio
async def test_leaving_the_dispatcher_from_its_own_handler_fails_that_handler() -> None:
    """`await bus.__aexit__(...)` in a handler hung asyncio and crashed trio: it is now
    the handler's failure (a LifecycleMisuse saying what to do), and the run goes on."""
    failures: list[BaseException] = []
    bus = Dispatcher(shutdown_timeout=1, on_error=lambda e, h, exc: failures.append(exc))
    stop = anyio.Event()

    @bus.on(Base)
    async def stop_handler(event: Base) -> None:
        try:
            await bus.__aexit__(None, None, None)
        finally:
            stop.set()

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Base(1))
            await stop.wait()
            await bus.drain()
            assert bus.running  # the handler's misuse did not stop the run
    assert len(failures) == 1
    assert isinstance(failures[0], LifecycleMisuse)
    assert isinstance(failures[0], RuntimeError)
    assert "anyio.Event" in str(failures[0])
    assert bus.stats(Base).failed == 1


@pytest.mark.anyio
async def test_entering_a_running_dispatcher_is_a_typed_error() -> None:
    bus = Dispatcher()
    async with bus:
        with pytest.raises(LifecycleMisuse, match="another Dispatcher") as raised:
            async with bus:
                pass  # pragma: no cover - never entered
        assert isinstance(raised.value, EventcoreError)
        assert isinstance(raised.value, RuntimeError)  # as before, for compatibility
        assert bus.running


@pytest.mark.anyio
async def test_drain_from_a_handler_is_the_same_typed_error() -> None:
    failures: list[BaseException] = []
    bus = Dispatcher(on_error=lambda e, h, exc: failures.append(exc))

    @bus.on(Base)
    async def handler(event: Base) -> None:
        await bus.drain()

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Base(1))
    assert len(failures) == 1
    assert isinstance(failures[0], LifecycleMisuse)


@pytest.mark.anyio
async def test_closed_messages_say_what_to_do() -> None:
    bus = Dispatcher()
    with pytest.raises(DispatcherClosed, match=r"drain\(\) inside `async with dispatcher:`"):
        await bus.drain()
    async with bus:
        pass
    with pytest.raises(DispatcherClosed, match=r"enter it again \(`async with dispatcher:`\)"):
        await bus.publish(Base(1))


def _stats_instance(bus: Dispatcher) -> object:
    return bus.stats(Base(1))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (_stats_instance, InvalidEvent),
        (lambda bus: bus.stats(str), InvalidEvent),  # as configure(str): never an event
        (lambda bus: bus.stats("x"), InvalidEvent),
        (lambda bus: bus.paused("x"), InvalidEvent),
        (lambda bus: bus.paused(int), InvalidEvent),
        (lambda bus: bus.config("x"), InvalidEvent),
        (lambda bus: bus.config(str), InvalidEvent),
        (lambda bus: bus.configure(str), InvalidEvent),
        (lambda bus: bus.unsubscribe(3), InvalidHandler),
    ],
    ids=[
        "stats-instance",
        "stats-str",
        "stats-'x'",
        "paused-'x'",
        "paused-int",
        "config-'x'",
        "config-str",
        "configure-str",
        "unsubscribe-3",
    ],
)
def test_observers_refuse_what_is_not_an_event_class(
    call: Callable[[Any], object], error: type[Exception]
) -> None:
    """They returned all-zero counters or raised AttributeError/TypeError of weakref."""
    bus = Dispatcher()
    with pytest.raises(error, match=r"takes"):
        call(bus)
    assert bus.stats(Base).published == 0  # event classes still work
    assert bus.config(object).queue_size == 1024
    assert not bus.paused(object)


@pytest.mark.anyio
async def test_the_demo_peak_is_never_below_what_is_queued() -> None:
    """Follow-on events (ReceiptSent, published by a handler) had peak 0 while queued."""
    report = DemoReport()
    bus = build(report)
    bus.pause(ReceiptSent)
    async with bus:
        for n in range(3):
            await bus.publish(ReceiptSent(n))
        table = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in rows(bus, report)}
        bus.resume(ReceiptSent)
    for event_type in POLICIES:
        row = table[event_type.__name__]
        queued = int(row["queued"].split("/")[0])
        assert int(row["peak"]) >= queued
    assert table["ReceiptSent"]["queued"].startswith("3/")
