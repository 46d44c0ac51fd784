"""The hot paths' short cuts (issue 14) behave like the general paths they bypass.

- ``publish_and_wait`` on a plain type is delivered inline by the worker
  (``WorkerPool._serve_tracked``); a type with a handler timeout goes through
  ``Delivery``: both give the same outcome, counters and reports.
- The hot loop of a type whose subscriptions have no filter awaits its handlers
  from a tuple of calls (or its one call): a failure is still reported with the
  handler as given.
- ``AsyncioWake`` (asyncio's one-waiter event) keeps ``anyio.Event``'s meaning.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from eventcore import Dispatcher, HandlerResult
from eventcore._wake import AsyncioWake, wake_class

from .events import Base

pytestmark = pytest.mark.anyio


async def ok(event: Base) -> int:
    return event.n * 10


async def fails(event: Base) -> None:
    raise ValueError(f"no {event.n}")


async def never(event: Base) -> None:
    raise AssertionError("filtered out: never called")


def broken_filter(event: Base) -> bool:
    raise KeyError("filter")


def summary(results: tuple[HandlerResult, ...]) -> list[tuple[str, Any, str | None]]:
    return [
        (
            getattr(r.handler, "__name__", "?"),
            r.value,
            None if r.exception is None else type(r.exception).__name__,
        )
        for r in results
    ]


async def _outcomes(general: bool) -> tuple[list[Any], list[tuple[str, str]], int]:
    errors: list[tuple[str, str]] = []

    def on_error(event: object, handler: Any, exc: BaseException) -> None:
        errors.append((getattr(handler, "__name__", "?"), type(exc).__name__))

    bus = Dispatcher(on_error=on_error)
    bus.subscribe(Base, ok)
    bus.subscribe(Base, fails)
    bus.subscribe(Base, never, filter=lambda e: False)
    bus.subscribe(Base, ok, filter=broken_filter)
    bus.subscribe(Base, ok, filter=lambda e: e.n > 1)
    if general:  # not plain: every event goes through Delivery
        bus.configure(Base, handler_timeout=60.0)
    seen = []
    async with bus:
        for n in range(3):
            outcome = await bus.publish_and_wait(Base(n))
            assert outcome.delivered
            seen.append(summary(outcome.results))
    return seen, errors, bus.stats()[Base].failed


async def test_publish_and_wait_inline_gives_what_delivery_gives() -> None:
    inline = await _outcomes(general=False)
    general = await _outcomes(general=True)
    assert inline == general
    seen, errors, failed = inline
    assert seen[2] == [("ok", 20, None), ("fails", None, "ValueError"), ("ok", 20, None)]
    assert errors[:2] == [("fails", "ValueError"), ("broken_filter", "KeyError")]
    assert failed == 6  # each of 3 events: one handler and one filter failed


async def test_a_handler_cancelled_by_itself_fails_in_the_outcome() -> None:
    async def cancels_itself(event: Base) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await anyio.lowlevel.checkpoint()
        raise anyio.get_cancelled_exc_class()()

    bus = Dispatcher(on_error=lambda *args: None)
    bus.subscribe(Base, cancels_itself)
    bus.subscribe(Base, ok)
    async with bus:
        outcome = await bus.publish_and_wait(Base(1))
        assert [r.exception is not None for r in outcome.results] == [True, False]
        assert outcome.results[1].value == 10
    assert bus.stats()[Base].failed == 1


async def test_unfiltered_hot_loop_reports_the_handler_as_given() -> None:
    reported: list[Any] = []

    def sync_fails(event: Base) -> None:  # run in a thread: awaited through an adapter
        raise RuntimeError("sync")

    bus = Dispatcher(on_error=lambda event, handler, exc: reported.append(handler))
    bus.subscribe(Base, fails)
    bus.subscribe(Base, sync_fails)
    async with bus:
        await bus.publish(Base(1))
        await bus.drain()
    assert reported == [fails, sync_fails]
    assert bus.stats()[Base].failed == 2


async def test_a_single_subscription_reports_the_handler_as_given() -> None:
    reported: list[Any] = []

    def sync_fails(event: Base) -> None:
        raise RuntimeError("sync")

    bus = Dispatcher(on_error=lambda event, handler, exc: reported.append(handler))
    bus.subscribe(Base, sync_fails)
    async with bus:
        await bus.publish(Base(1))
        await bus.drain()
        bus.subscribe(Base, fails)  # two now: the tuple loop takes over
        await bus.publish(Base(2))
        await bus.drain()
    assert reported == [sync_fails, sync_fails, fails]


async def test_the_wake_of_each_loop(anyio_backend: Any) -> None:
    cls = wake_class(anyio.get_cancelled_exc_class())
    if anyio_backend[0] == "trio":
        import trio

        assert cls is trio.Event
    else:
        assert cls is AsyncioWake
    wake = cls()
    assert not wake.is_set()

    async def waiter() -> None:
        await wake.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        wake.set()
    assert wake.is_set()
    await wake.wait()  # set already: returns
    wake.set()  # twice: no harm


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cancelled_wait_then_a_set_is_harmless() -> None:
    wake = AsyncioWake()
    with anyio.move_on_after(0):
        await wake.wait()
    wake.set()  # its waiter was cancelled: nobody to wake, nothing raised
    assert wake.is_set()
    await wake.wait()
