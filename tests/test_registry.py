"""Subscriptions: MRO resolution, filters, order, unsubscribe, handler validation."""

from __future__ import annotations

import functools

import pytest

from eventcore import Dispatcher, InvalidConfiguration, InvalidEvent, InvalidHandler

from .events import Base, Child, GrandChild, Other

pytestmark = pytest.mark.anyio


async def test_supertype_subscription_receives_subclasses_in_subscription_order() -> None:
    bus = Dispatcher()
    seen: list[tuple[str, object]] = []

    @bus.on(Base)
    async def on_base(event: Base) -> None:
        seen.append(("base", event))

    @bus.on(Child)
    async def on_child(event: Child) -> None:
        seen.append(("child", event))

    async with bus:
        await bus.publish(Base(1))
        await bus.publish(GrandChild(2))
        await bus.publish(Other(3))
    # Order holds within one event (subscription order), not across event types.
    assert seen.index(("base", GrandChild(2))) < seen.index(("child", GrandChild(2)))
    assert sorted(map(repr, seen)) == sorted(
        map(repr, [("base", Base(1)), ("base", GrandChild(2)), ("child", GrandChild(2))])
    )


async def test_filter_selects_events() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    async def big(event: Base) -> None:
        seen.append(event.n)

    bus.subscribe(Base, big, filter=lambda e: e.n > 10)
    async with bus:
        for n in (5, 50, 10, 11):
            await bus.publish(Base(n))
    assert seen == [50, 11]


async def test_unsubscribe_invalidates_the_resolution_cache() -> None:
    bus = Dispatcher()
    seen: list[str] = []

    async def first(event: Child) -> None:
        seen.append(f"first{event.n}")

    async def second(event: Base) -> None:
        seen.append(f"second{event.n}")

    sub1 = bus.subscribe(Child, first)
    async with bus:
        await bus.publish(Child(1))
        await bus.drain()
        sub2 = bus.subscribe(Base, second)  # after the type's group exists
        await bus.publish(Child(2))
        await bus.drain()
        sub1.unsubscribe()
        sub1.unsubscribe()  # idempotent
        await bus.publish(Child(3))
        await bus.drain()
        bus.unsubscribe(sub2)
        await bus.publish(Child(4))
    assert seen == ["first1", "first2", "second2", "second3"]
    assert not sub1.active
    assert "inactive" in repr(sub1)


async def test_unsubscribe_applies_to_queued_events() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    async def handler(event: Base) -> None:
        seen.append(event.n)

    sub = bus.subscribe(Base, handler)
    async with bus:
        bus.publish_nowait(Base(1))
        sub.unsubscribe()  # before any worker ran
    assert seen == []


async def test_async_callables_are_accepted() -> None:
    bus = Dispatcher()
    seen: list[str] = []

    class Callable:
        async def __call__(self, event: Base) -> None:
            seen.append("object")

    async def tagged(tag: str, event: Base) -> None:
        seen.append(tag)

    bus.subscribe(Base, Callable())
    bus.subscribe(Base, functools.partial(tagged, "partial"))
    async with bus:
        await bus.publish(Base(1))
    assert seen == ["object", "partial"]


def test_what_is_no_handler_is_refused_with_advice() -> None:
    bus = Dispatcher()

    async def handler(event: Base) -> None:  # pragma: no cover - never called
        pass

    coroutine = handler(Base(1))
    with pytest.raises(InvalidHandler, match=r"coroutine.*without calling it"):
        bus.subscribe(Base, coroutine)  # type: ignore[arg-type]
    coroutine.close()
    with pytest.raises(TypeError):  # InvalidHandler is a TypeError
        bus.subscribe(Base, Base)  # type: ignore[arg-type]


def test_subscribe_needs_a_class_and_a_callable_filter() -> None:
    bus = Dispatcher()

    async def handler(event: Base) -> None:  # pragma: no cover - never called
        pass

    with pytest.raises(InvalidEvent):
        bus.subscribe(Base(1), handler)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfiguration, match="filter"):
        bus.subscribe(Base, handler, filter=True)  # type: ignore[arg-type]
