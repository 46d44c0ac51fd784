"""Delivery control: timeouts, retries, dead letters, per-key order, middleware,
context, authorization, lifecycle."""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from eventcore import (
    CallNext,
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    DropReason,
    Grants,
    HandlerCall,
    HandlerTimeout,
    InvalidConfiguration,
    InvalidEvent,
    Lifecycle,
    Overflow,
    Retry,
    Unauthorized,
    acting_as,
    current_principal,
)

from .events import Base, Child, GrandChild, Other

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

FAST_RETRY = Retry(attempts=3, backoff=0.001, jitter=0.5)


async def test_a_hung_handler_is_cancelled_at_its_timeout_and_the_slot_freed() -> None:
    failures: list[BaseException] = []
    bus = Dispatcher(on_error=lambda e, h, x: failures.append(x))
    seen: list[int] = []

    @bus.on(Base, timeout=0.02)
    async def sometimes_hangs(event: Base) -> None:
        if event.n == 0:
            await anyio.sleep_forever()
        seen.append(event.n)

    async with bus:
        for n in range(3):
            await bus.publish(Base(n))
    assert seen == [1, 2]
    assert len(failures) == 1
    assert isinstance(failures[0], HandlerTimeout)
    assert isinstance(failures[0], TimeoutError)
    assert "sometimes_hangs ran past its timeout of 0.02 s on Base" in str(failures[0])
    assert bus.stats(Base).failed == 1


async def test_type_default_timeout_and_a_handlers_own_timeout_error() -> None:
    failures: list[BaseException] = []
    bus = Dispatcher(on_error=lambda e, h, x: failures.append(x))
    bus.configure(Base, handler_timeout=0.02)

    @bus.on(Base)
    async def slow(event: Base) -> None:
        await anyio.sleep(5)

    @bus.on(Base)
    async def raises_timeout(event: Base) -> None:
        raise TimeoutError("my own")  # not ours: a plain failure

    async with bus:
        await bus.publish(Base(1))
    assert [type(x) for x in failures] == [HandlerTimeout, TimeoutError]


async def test_retries_back_off_and_do_not_stall_other_handlers() -> None:
    calls: list[str] = []
    bus = Dispatcher(on_error=lambda e, h, x: None)

    @bus.on(Base, retry=FAST_RETRY)
    async def flaky(event: Base) -> str:
        calls.append("flaky")
        if calls.count("flaky") < 3:
            raise ConnectionError("try again")
        return "finally"

    @bus.on(Base)
    async def steady(event: Base) -> None:
        calls.append("steady")

    async with bus:
        outcome = await bus.publish_and_wait(Base(1))
    # steady ran before flaky's first backoff
    assert calls == ["flaky", "steady", "flaky", "flaky"]
    assert outcome.ok
    assert outcome.results[0].value == "finally"
    assert outcome.results[0].attempts == 3
    assert bus.stats(Base).failed == 0


async def test_retry_gives_up_after_the_last_attempt_and_dead_letters() -> None:
    letters: list[DeadLetter] = []
    bus = Dispatcher(on_error=lambda e, h, x: None, on_dead_letter=letters.append)
    attempts = 0

    async def broken(event: Base) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError(f"attempt {attempts}")

    bus.subscribe(Base, broken, retry=Retry(attempts=4, backoff=0.001, on=(ValueError,)))

    async def not_retried(event: Base) -> None:
        raise KeyError("no retry for KeyError")

    bus.subscribe(Base, not_retried, retry=Retry(attempts=4, backoff=0.001, on=(ValueError,)))
    async with bus:
        await bus.publish(Base(1))
    assert attempts == 4
    assert [(d.reason, d.handler, d.attempts) for d in letters] == [
        (DeadLetterReason.HANDLER_FAILED, not_retried, 1),
        (DeadLetterReason.HANDLER_FAILED, broken, 4),
    ]
    assert str(letters[1].exception) == "attempt 4"
    assert bus.stats(Base).failed == 2


def test_retry_settings_are_checked() -> None:
    for bad in (
        {"attempts": 0},
        {"backoff": -1},
        {"multiplier": 0.5},
        {"jitter": 2},
        {"on": ()},
        {"on": (int,)},
    ):
        with pytest.raises(InvalidConfiguration):
            Retry(**bad)
    with pytest.raises(InvalidConfiguration, match="retry"):
        Dispatcher().configure(Base, retry=3)  # type: ignore[arg-type]
    assert Retry(backoff=1, multiplier=2, max_backoff=3, jitter=0).delay(5) == 3


async def test_dead_letters_can_be_subscribed_and_a_failing_sink_does_not_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Dispatcher(on_error=lambda e, h, x: None, on_drop=lambda e, r: None)
    bus.configure(Other, queue_size=1, overflow=Overflow.DROP_NEWEST)
    letters: list[DeadLetter] = []

    @bus.on(Base)
    async def broken(event: Base) -> None:
        raise RuntimeError("broken")

    @bus.on(DeadLetter)
    async def store(letter: DeadLetter) -> None:
        letters.append(letter)
        raise OSError("the dead-letter store is down too")

    gate = anyio.Event()

    @bus.on(Other)
    async def hold(event: Other) -> None:
        await gate.wait()

    with caplog.at_level(logging.ERROR, logger="eventcore"):
        async with bus:
            await bus.publish(Base(1))
            await bus.publish(Other(1))
            await anyio.wait_all_tasks_blocked()
            await bus.publish(Other(2))
            assert await bus.publish(Other(3)) is False  # refused: dead-lettered
            gate.set()
    assert [(d.event, d.reason) for d in letters] == [
        (Base(1), DeadLetterReason.HANDLER_FAILED),
        (Other(3), DeadLetterReason.DROPPED_NEWEST),
    ]
    assert "not dead-lettered again" in caplog.text
    assert bus.stats(DeadLetter).handled == 2  # no third letter about the letters


async def test_unmatched_events_are_dead_lettered_only_on_request() -> None:
    letters: list[DeadLetter] = []
    bus = Dispatcher(on_dead_letter=letters.append, dead_letter_unmatched=True)

    @bus.on(Base, filter=lambda e: e.n > 0)
    async def positive(event: Base) -> None:
        pass

    async with bus:
        await bus.publish(Base(0))  # filtered out
        await bus.publish(Base(1))
        await bus.publish(Other(1))  # nobody subscribed
    assert sorted(repr((d.event, d.reason)) for d in letters) == [
        repr((Base(0), DeadLetterReason.UNMATCHED)),
        repr((Other(1), DeadLetterReason.UNMATCHED)),
    ]
    quiet: list[DeadLetter] = []
    bus = Dispatcher(on_dead_letter=quiet.append)
    async with bus:
        await bus.publish(Other(1))
    assert quiet == []


@dataclasses.dataclass(frozen=True)
class Payment:
    account: str
    n: int


async def test_per_key_order_holds_while_keys_run_concurrently() -> None:
    bus = Dispatcher(concurrency=4, queue_size=8)
    bus.configure(Payment, key=lambda p: p.account)
    running: dict[str, int] = {}
    seen: dict[str, list[int]] = {}
    peak = 0

    @bus.on(Payment)
    async def settle(payment: Payment) -> None:
        nonlocal peak
        assert running.get(payment.account, 0) == 0, "two of one key at once"
        running[payment.account] = 1
        peak = max(peak, sum(running.values()))
        seen.setdefault(payment.account, []).append(payment.n)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        running[payment.account] = 0

    async with bus:
        for n in range(60):
            await bus.publish(Payment("abcdef"[n % 6] if n % 3 else "a", n))
            assert bus.stats(Payment).queued <= 8
    expected: dict[str, list[int]] = {}
    for n in range(60):
        expected.setdefault("abcdef"[n % 6] if n % 3 else "a", []).append(n)
    assert seen == expected
    assert peak == 4
    assert bus.stats(Payment).handled == 60


async def test_a_failing_key_function_refuses_the_publish_and_harms_nothing() -> None:
    # Regression (issue 9, items 6 and 7): the key is computed when the event is
    # published, so a failing or unhashable key is the publisher's InvalidEvent - not
    # a crashed worker pool, nor a "handled" event that no handler saw.
    bus = Dispatcher()

    def key(event: Base) -> object:
        return [1] if event.n == 3 else 1 // event.n

    bus.configure(Base, key=key)
    seen: list[int] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(event.n)

    async with bus:
        await bus.publish(Base(1))
        with pytest.raises(InvalidEvent, match="key function") as failed:
            await bus.publish(Base(0))
        assert isinstance(failed.value.__cause__, ZeroDivisionError)
        with pytest.raises(InvalidEvent, match="hashable"):
            await bus.publish_and_wait(Base(3))
        with pytest.raises(InvalidEvent):
            bus.publish_nowait(Base(0))
        await bus.publish(Base(2))
        await bus.drain()
        stats = bus.stats(Base)
        assert (stats.accepted, stats.handled, stats.refused, stats.in_flight) == (2, 2, 3, 0)
    assert seen == [1, 2]


async def test_publish_middleware_enriches_refuses_and_reroutes() -> None:
    drops: list[tuple[object, DropReason]] = []

    def stamp(event: Any) -> Any:
        return dataclasses.replace(event, n=event.n * 10) if isinstance(event, Child) else event

    def refuse_negative(event: Any) -> Any:
        return None if event.n < 0 else event

    def reroute(event: Any) -> Any:
        return Other(event.n) if isinstance(event, GrandChild) else event

    bus = Dispatcher(
        publish_middleware=[stamp, refuse_negative, reroute],
        on_drop=lambda e, r: drops.append((e, r)),
    )
    seen: list[object] = []

    @bus.on(Base)
    async def on_base(event: Base) -> None:
        seen.append(event)

    @bus.on(Other)
    async def on_other(event: Other) -> None:
        seen.append(event)

    async with bus:
        assert await bus.publish(Child(1)) is True
        assert await bus.publish(Base(-1)) is False
        assert bus.publish_nowait(GrandChild(2)) is True
        outcome = await bus.publish_and_wait(Base(-5))
    assert sorted(map(repr, seen)) == [repr(Child(10)), repr(Other(20))]
    assert drops == [(Base(-1), DropReason.REJECTED), (Base(-5), DropReason.REJECTED)]
    assert outcome.dropped is DropReason.REJECTED
    assert bus.stats(Base).dropped == 2


async def test_handle_middleware_wraps_every_call_in_order() -> None:
    log: list[str] = []

    async def outer(event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        log.append(f"outer>{call.subscription.handler.__name__}#{call.attempt}")
        assert call.event_id > 0
        assert call.accepted_at <= anyio.current_time()
        result = await call_next(event)
        log.append(f"outer<{result}")
        return result

    async def inner(event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        log.append("inner")
        return await call_next(event)

    bus = Dispatcher(handle_middleware=[outer, inner])

    @bus.on(Base)
    async def double(event: Base) -> int:
        log.append("handler")
        return event.n * 2

    async with bus:
        outcome = await bus.publish_and_wait(Base(4))
    assert log == ["outer>double#1", "inner", "handler", "outer<8"]
    assert outcome.results[0].value == 8


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_handlers_see_the_publishers_contextvars() -> None:
    bus = Dispatcher(propagate_context=True, queue_size=2)
    seen: list[tuple[int, str]] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        await anyio.lowlevel.checkpoint()  # the context survives awaits
        seen.append((event.n, request_id.get()))
        if event.n < 3:
            await bus.publish(Base(event.n + 10))  # a follow-on inherits the context
        request_id.set("changed by the handler")  # does not leak into the publisher

    async def request(n: int) -> None:
        request_id.set(f"req-{n}")
        await bus.publish(Base(n))
        assert request_id.get() == f"req-{n}"

    async with bus, anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(request, n)
    assert sorted(seen) == [
        (0, "req-0"), (1, "req-1"), (2, "req-2"), (10, "req-0"), (11, "req-1"), (12, "req-2"),
    ]  # fmt: skip


async def test_context_is_not_propagated_unless_asked() -> None:
    bus = Dispatcher()
    seen: list[str] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(request_id.get())

    async with bus:
        request_id.set("req-1")
        await bus.publish(Base(1))
        await bus.drain()
    assert seen == ["-"]


async def test_authorization_denies_by_default_and_filters_receivers() -> None:
    policy = Grants(
        publish={"web": [Base], "admin": [Base, Other]},
        receive={"billing": [Child], "audit": [Base, Other]},
    )
    bus = Dispatcher(policy=policy)
    seen: list[tuple[str, object]] = []

    def recorder(who: str) -> Callable[[object], Awaitable[None]]:
        async def record(event: object) -> None:
            seen.append((who, event))

        return record

    bus.subscribe(Base, recorder("billing"), principal="billing")
    bus.subscribe(Base, recorder("audit"), principal="audit")
    bus.subscribe(Base, recorder("anonymous"))
    async with bus:
        with pytest.raises(Unauthorized, match="None may not publish Base"):
            await bus.publish(Base(0))  # anonymous
        with acting_as("web"):
            assert current_principal() == "web"
            await bus.publish(Base(1))
            await bus.publish(Child(2))
            with pytest.raises(Unauthorized) as info:
                bus.publish_nowait(Other(3))
            assert (info.value.principal, info.value.event_type) == ("web", Other)
        await bus.publish(Other(4), principal="admin")
        with pytest.raises(PermissionError):
            await bus.publish_and_wait(Other(5), principal="web")
    # billing may receive Child only, although it subscribed to Base
    assert sorted(map(repr, seen)) == sorted(
        map(repr, [("audit", Base(1)), ("audit", Child(2)), ("billing", Child(2))])
    )
    assert bus.stats(Base).refused == 1
    assert bus.stats(Other).refused == 2
    assert bus.stats(Other).accepted == 1


def test_a_policy_needs_both_methods() -> None:
    with pytest.raises(InvalidConfiguration, match="may_publish"):
        Dispatcher(policy=object())  # type: ignore[arg-type]


async def test_publish_and_wait_can_raise_the_failures() -> None:
    bus = Dispatcher(on_error=lambda e, h, x: None)

    @bus.on(Base)
    async def broken(event: Base) -> None:
        raise ValueError("no")

    async with bus:
        with pytest.raises(ExceptionGroup) as info:
            await bus.publish_and_wait(Base(1), raise_errors=True)
    assert [type(e) for e in info.value.exceptions] == [ValueError]


async def test_lifecycle_hooks_and_the_slow_handler_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    phases: list[Lifecycle] = []
    bus = Dispatcher(on_lifecycle=phases.append, slow_handler_threshold=0.02)

    @bus.on(Base)
    async def slow(event: Base) -> None:
        assert phases[0] is Lifecycle.STARTED
        await anyio.sleep(0.1)

    with caplog.at_level(logging.WARNING, logger="eventcore"):
        async with bus:
            await bus.publish(Base(1))
            await bus.drain()
            await bus.publish(Base(2))
    assert phases == [Lifecycle.STARTED, Lifecycle.DRAINING, Lifecycle.STOPPED]
    warnings = [r.getMessage() for r in caplog.records if "slow handler" in r.getMessage()]
    assert len(warnings) == 2
    assert "test_lifecycle_hooks_and_the_slow_handler_warning.<locals>.slow" in warnings[0]
    assert "on Base (threshold 0.02 s)" in warnings[0]


async def test_failure_records_carry_the_event_type_and_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[HandlerCall] = []

    async def remember(event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        calls.append(call)
        return await call_next(event)

    bus = Dispatcher(handle_middleware=[remember])

    @bus.on(Base)
    async def first(event: Base) -> None:
        pass

    @bus.on(Base)
    async def broken(event: Base) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="eventcore"):
        async with bus:
            await bus.publish(Base(1))
    [record] = [r for r in caplog.records if "failed on Base" in r.getMessage()]
    assert record.event_type == "Base"  # type: ignore[attr-defined]
    assert record.event_id == calls[0].event_id  # type: ignore[attr-defined]
    assert [c.first for c in calls] == [True, False]
    assert calls[0].accepted_at <= calls[0].started_at == calls[1].started_at


async def test_what_publish_middleware_sets_travels_with_the_event_only() -> None:
    import contextvars

    from eventcore._middleware import in_event_context

    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="-")

    def stamp(event: Any) -> Any:
        if in_event_context():
            tag.set(f"sent-{event.n}")
        return event

    bus = Dispatcher(propagate_context=True, publish_middleware=[stamp])
    seen: list[str] = []

    @bus.on(Base)
    async def handler(event: Base) -> None:
        seen.append(tag.get())

    async with bus:
        await bus.publish_and_wait(Base(1))
        assert tag.get() == "-"  # the publisher's own context is untouched
    assert seen == ["sent-1"]
