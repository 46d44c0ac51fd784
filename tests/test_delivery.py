"""Handler failures are isolated and reported; publish_and_wait outcomes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from eventcore import Dispatcher, Overflow

from .events import Base

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio


async def test_failing_handler_harms_no_other_handler_and_no_later_event() -> None:
    failures: list[tuple[object, Callable[..., Any], BaseException]] = []
    bus = Dispatcher(on_error=lambda e, h, x: failures.append((e, h, x)))
    seen: list[str] = []

    @bus.on(Base)
    async def flaky(event: Base) -> None:
        if event.n % 2:
            raise ValueError(f"odd {event.n}")
        seen.append(f"flaky{event.n}")

    @bus.on(Base)
    async def steady(event: Base) -> None:
        seen.append(f"steady{event.n}")

    async with bus:
        for n in range(4):
            await bus.publish(Base(n))
    assert seen == ["flaky0", "steady0", "steady1", "flaky2", "steady2", "steady3"]
    assert [(e, h) for e, h, _ in failures] == [(Base(1), flaky), (Base(3), flaky)]
    assert all(isinstance(x, ValueError) for _, _, x in failures)
    stats = bus.stats(Base)
    assert (stats.handled, stats.failed) == (4, 2)


async def test_failures_are_logged_without_a_hook(caplog: pytest.LogCaptureFixture) -> None:
    bus = Dispatcher()

    @bus.on(Base)
    async def broken(event: Base) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="eventcore"):
        async with bus:
            await bus.publish(Base(1))
    assert "broken failed on Base" in caplog.text
    assert "RuntimeError: boom" in caplog.text


async def test_a_failing_hook_is_logged_and_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_hook(event: object, handler: object, exc: BaseException) -> None:
        raise KeyError("hook")

    bus = Dispatcher(on_error=bad_hook)
    seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(event.n)
        raise ValueError

    with caplog.at_level(logging.ERROR, logger="eventcore"):
        async with bus:
            await bus.publish(Base(1))
            await bus.publish(Base(2))
    assert seen == [1, 2]
    assert "on_error hook failed" in caplog.text


async def test_a_handler_raising_its_own_cancellation_is_a_failure() -> None:
    """A stray cancellation from inside a handler must not kill the worker."""
    failures: list[BaseException] = []
    bus = Dispatcher(on_error=lambda e, h, x: failures.append(x))
    seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(event.n)
        if event.n == 1:
            raise anyio.get_cancelled_exc_class()()

    async with bus:
        await bus.publish(Base(1))
        await bus.publish(Base(2))
    assert seen == [1, 2]
    assert len(failures) == 1
    assert bus.stats(Base).failed == 1


async def test_publish_and_wait_returns_each_result_and_exception() -> None:
    bus = Dispatcher(on_error=lambda e, h, x: None)

    @bus.on(Base)
    async def double(event: Base) -> int:
        return event.n * 2

    @bus.on(Base, filter=lambda e: e.n > 100)
    async def skipped(event: Base) -> int:  # pragma: no cover - filtered out
        return -1

    @bus.on(Base)
    async def broken(event: Base) -> None:
        raise ValueError("no")

    async with bus:
        outcome = await bus.publish_and_wait(Base(21))
    assert outcome.event == Base(21)
    assert outcome.delivered
    assert not outcome.ok
    assert [r.handler for r in outcome.results] == [double, broken]
    assert outcome.results[0].value == 42
    assert outcome.results[0].ok
    assert isinstance(outcome.results[1].exception, ValueError)
    assert [type(x) for x in outcome.exceptions] == [ValueError]
    with pytest.raises(ExceptionGroup) as info:
        outcome.raise_for_failures()
    assert info.value.exceptions[0] is outcome.results[1].exception


async def test_publish_and_wait_reports_a_dropped_event() -> None:
    bus = Dispatcher(queue_size=1, overflow=Overflow.DROP_NEWEST)
    gate = anyio.Event()

    @bus.on(Base)
    async def hold(event: Base) -> None:
        await gate.wait()

    async with bus:
        await bus.publish(Base(0))
        await anyio.wait_all_tasks_blocked()
        await bus.publish(Base(1))  # fills the queue
        outcome = await bus.publish_and_wait(Base(2))
        gate.set()
    assert not outcome.delivered
    assert outcome.results == ()
    assert outcome.dropped is not None
    assert outcome.dropped.value == "dropped_newest"
    outcome.raise_for_failures()  # nothing to raise
