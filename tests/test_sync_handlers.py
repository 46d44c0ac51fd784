"""Plain ``def`` handlers run in worker threads with the same promises as async ones."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from eventcore import Dispatcher, HandlerTimeout, InvalidHandler, Retry

from .events import Base, Other

pytestmark = pytest.mark.anyio

LIMIT = 10.0


async def test_a_plain_function_runs_in_a_worker_thread() -> None:
    bus = Dispatcher()
    threads: list[int] = []

    @bus.on(Base)
    def handler(event: Base) -> int:
        threads.append(threading.get_ident())
        return event.n * 2

    with anyio.fail_after(LIMIT):
        async with bus:
            outcome = await bus.publish_and_wait(Base(21))
            loop_thread = threading.get_ident()
    assert outcome.ok
    assert [r.value for r in outcome.results] == [42]
    assert outcome.results[0].handler is handler
    assert len(threads) == 1
    assert threads[0] != loop_thread


async def test_failures_are_isolated_counted_and_retried() -> None:
    errors: list[tuple[Any, BaseException]] = []
    bus = Dispatcher(on_error=lambda event, handler, exc: errors.append((handler, exc)))
    calls: list[int] = []

    def flaky(event: Base) -> None:
        calls.append(event.n)
        if len(calls) < 3:
            raise OSError("not yet")

    def broken(event: Base) -> None:
        raise ValueError(event.n)

    bus.subscribe(Base, flaky, retry=Retry(attempts=3, backoff=0))
    bus.subscribe(Base, broken)
    seen: list[int] = []

    @bus.on(Other)
    async def other(event: Other) -> None:
        seen.append(event.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            outcome = await bus.publish_and_wait(Base(1))
            await bus.publish(Other(2))
            await bus.drain()
    assert calls == [1, 1, 1]
    assert [r.attempts for r in outcome.results] == [3, 1]
    assert isinstance(outcome.results[1].exception, ValueError)
    assert [handler for handler, _ in errors] == [broken]
    assert bus.stats(Base).failed == 1
    assert seen == [2]


async def test_a_timeout_abandons_the_wait_and_the_thread_still_counts() -> None:
    errors: list[BaseException] = []
    bus = Dispatcher(on_error=lambda event, handler, exc: errors.append(exc))
    release = threading.Event()
    running = [0]
    peak = [0]
    lock = threading.Lock()

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

    bus.configure(Base, concurrency=1)
    # Base(0) always runs past it; 1 s leaves Base(1) (which waits for the abandoned
    # thread, then runs at once) its margin on a busy machine (0.2 s ran out under
    # pytest-xdist with the machine loaded)
    bus.subscribe(Base, slow, timeout=1.0)
    with anyio.fail_after(LIMIT):
        async with bus:
            first = await bus.publish_and_wait(Base(0))
            assert isinstance(first.results[0].exception, HandlerTimeout)
            # the next call waits for the abandoned thread: one thread per slot
            async with anyio.create_task_group() as tg:
                tg.start_soon(bus.publish_and_wait, Base(1))
                await anyio.sleep(0.02)
                assert running[0] == 1  # only the abandoned thread
                release.set()
    assert peak[0] == 1
    assert len(errors) == 1
    assert isinstance(errors[0], HandlerTimeout)
    assert bus.stats(Base).handled == 2


async def test_concurrency_bounds_the_threads_of_a_type() -> None:
    bus = Dispatcher(concurrency=3)
    running = [0]
    peak = [0]
    lock = threading.Lock()

    @bus.on(Base)
    def handler(event: Base) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.005)
        with lock:
            running[0] -= 1

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(20):
                await bus.publish(Base(n))
    assert peak[0] == 3
    assert bus.stats(Base).handled == 20


async def test_context_reaches_a_plain_handler() -> None:
    import contextvars

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    bus = Dispatcher(propagate_context=True)
    seen: list[str] = []

    @bus.on(Base)
    def handler(event: Base) -> None:
        seen.append(request_id.get())

    with anyio.fail_after(LIMIT):
        async with bus:
            request_id.set("r-1")
            await bus.publish_and_wait(Base(1))
    assert seen == ["r-1"]


async def test_a_plain_function_returning_a_coroutine_is_a_clear_failure() -> None:
    bus = Dispatcher(on_error=lambda *args: None)

    async def real(event: Base) -> None:  # pragma: no cover - never awaited
        pass

    bus.subscribe(Base, lambda event: real(event))
    with anyio.fail_after(LIMIT):
        async with bus:
            outcome = await bus.publish_and_wait(Base(1))
    [result] = outcome.results
    assert isinstance(result.exception, InvalidHandler)
    assert "async def" in str(result.exception)
