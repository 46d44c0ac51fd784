"""The contract on a broker, for any transport: promises 1, 2, 3, 6, 7 and 9 of
docs/CONTRACT.md as hypothesis properties.

Nothing here knows a broker. A test module binds the suite to one by passing a
:class:`BrokerKit` (fresh transports in a namespace of their own, a way to write a
raw message, a clean-up) and the event loop to run on::

    def test_accepted_means_delivered(kit: BrokerKit, loop: Loop) -> None:
        broker_contract.accepted_means_delivered(kit, loop)

Every example runs in a fresh event loop and a fresh namespace, bounded by
``anyio.fail_after`` so that a hang fails instead of blocking the suite. On a
broker, delivery is at least once: duplicates are allowed (and counted), losses
and made-up events are not.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from eventcore import (
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    DispatcherClosed,
    InvalidEvent,
    Overflow,
    PublishTimeout,
    QueueFull,
)
from eventcore.wire import EncodeError, MessageTooLarge, event

#: every example gives up (fails) after this many seconds
LIMIT = 30.0
#: a broker round trip per event makes examples slow: few of them, each meaningful,
#: and no shrinking (each failing try could wait out LIMIT): the first failure is shown
EXAMPLES = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


class BrokerKit(Protocol):
    """What the suite needs from a broker binding."""

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        """A new transport writing under *namespace*, consuming as *group*; with
        *capacity*, a stream holds at most that many unacknowledged events."""
        ...

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        """Put *data* on the stream of the event type named *name*, as is."""
        ...

    def cleanup(self, namespace: str) -> None:
        """Delete everything under *namespace*."""
        ...


@dataclass(frozen=True)
class Loop:
    """The event loop examples run on: ``("asyncio", {"use_uvloop": ...})``."""

    backend: str
    options: dict[str, Any]


@event("contract.item", version=1)
@dataclass(frozen=True)
class Item:
    """The event of the suite; ``n`` is unique per publish."""

    n: int
    fail: bool = False
    blob: str = ""


@event("contract.opaque", version=1)
@dataclass(frozen=True)
class Opaque:
    """An event whose payload the codec cannot encode."""

    thing: Any


def run(kit: BrokerKit, loop: Loop, body: Callable[[str], Awaitable[None]]) -> None:
    """Run *body(namespace)* in a fresh loop and namespace, cleaned up afterwards."""
    namespace = f"contract-{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        with anyio.fail_after(LIMIT):
            await body(namespace)

    try:
        anyio.run(main, backend=loop.backend, backend_options=loop.options)
    finally:
        kit.cleanup(namespace)


def dispatcher(transport: Any, **options: Any) -> Dispatcher:
    """A dispatcher routing everything through *transport*, with the suite's names."""
    bus = Dispatcher(transport=transport, **options)
    bus.register(Item)
    bus.register(Opaque)
    return bus


def held_now(bus: Dispatcher) -> tuple[int, int]:
    """How many events of the suite's type *bus* holds: queued, and being handled."""
    stats = bus.stats(Item)
    return stats.queued, stats.in_flight


async def until(condition: Callable[[], bool]) -> None:
    """Wait until *condition()* holds (the state is on the broker and in other tasks)."""
    while not condition():  # noqa: ASYNC110 - polling what other tasks and the broker do
        await anyio.sleep(0.01)


# -- 1. Accepted means delivered --------------------------------------------------------


@EXAMPLES
@given(
    events=st.integers(1, 60),
    publishers=st.integers(1, 3),
    consumers=st.integers(1, 3),
    services=st.integers(1, 2),
    queue_size=st.integers(1, 8),
    concurrency=st.integers(1, 3),
)
def accepted_means_delivered(
    kit: BrokerKit,
    loop: Loop,
    events: int,
    publishers: int,
    consumers: int,
    services: int,
    queue_size: int,
    concurrency: int,
) -> None:
    """Every accepted event reaches each service (consumer group) at least once,
    shared among the processes of a service; nothing made up."""

    async def body(ns: str) -> None:
        seen: dict[str, list[int]] = {f"svc{s}": [] for s in range(services)}
        buses = []
        for group in seen:
            for _ in range(consumers):
                bus = dispatcher(
                    kit.transport(ns, group), queue_size=queue_size, concurrency=concurrency
                )

                async def handle(item: Item, got: list[int] = seen[group]) -> None:
                    await anyio.lowlevel.checkpoint()
                    got.append(item.n)

                bus.subscribe(Item, handle)
                buses.append(bus)
        publisher = dispatcher(kit.transport(ns, "publisher"))
        accepted: list[int] = []
        for bus in buses:
            await bus.__aenter__()
        try:
            async with publisher:

                async def publish(start: int) -> None:
                    for n in range(start, events, publishers):
                        if await publisher.publish(Item(n)):
                            accepted.append(n)  # noqa: PERF401 - awaits in between

                async with anyio.create_task_group() as tg:
                    for start in range(publishers):
                        tg.start_soon(publish, start)
            await until(lambda: all(set(got) >= set(accepted) for got in seen.values()))
            for bus in buses:
                await bus.drain()
        finally:
            for bus in reversed(buses):
                await bus.__aexit__(None, None, None)
        assert sorted(accepted) == list(range(events))
        for got in seen.values():
            assert set(got) == set(accepted)  # all of them, nothing made up
        handled = sum(bus.stats(Item).handled for bus in buses)
        assert handled == sum(len(got) for got in seen.values())

    run(kit, loop, body)


# -- 2. Nothing vanishes silently -------------------------------------------------------


@EXAMPLES
@given(
    capacity=st.integers(1, 5),
    extra=st.integers(1, 4),
    policy=st.sampled_from([Overflow.RAISE, Overflow.DROP_NEWEST, Overflow.BLOCK]),
)
def nothing_vanishes_silently(
    kit: BrokerKit, loop: Loop, capacity: int, extra: int, policy: Overflow
) -> None:
    """Into a full stream each publish is refused the way its policy says, reported
    and counted; exactly the accepted ones are delivered later."""

    async def body(ns: str) -> None:
        dropped: list[Any] = []
        publisher = dispatcher(
            kit.transport(ns, "publisher", capacity=capacity),
            on_drop=lambda event, reason: dropped.append(event),
        )
        publisher.configure(Item, overflow=policy)
        seen: list[int] = []
        consumer = dispatcher(kit.transport(ns, "svc", capacity=capacity))

        @consumer.on(Item)
        async def handle(item: Item) -> None:
            seen.append(item.n)

        outcomes: list[str] = []
        async with publisher:
            for n in range(capacity + extra):
                try:
                    ok = await publisher.publish(Item(n), timeout=0.05)
                except QueueFull:
                    outcomes.append("refused")
                except PublishTimeout:
                    outcomes.append("timed out")
                else:
                    outcomes.append("accepted" if ok else "dropped")
        accepted = [n for n, outcome in enumerate(outcomes) if outcome == "accepted"]
        assert accepted == list(range(capacity))
        expected = {
            Overflow.RAISE: "refused",
            Overflow.DROP_NEWEST: "dropped",
            Overflow.BLOCK: "timed out",
        }[policy]
        assert outcomes[capacity:] == [expected] * extra
        stats = publisher.stats(Item)  # a routed publish enters no local queue
        assert stats.dropped + stats.refused == extra
        assert stats.dropped == (extra if policy is Overflow.DROP_NEWEST else 0)
        assert len(dropped) == (extra if policy is Overflow.DROP_NEWEST else 0)
        async with consumer:
            await until(lambda: len(seen) >= capacity)
            await consumer.drain()
        assert sorted(set(seen)) == accepted
        assert consumer.stats(Item).handled == len(seen)

    run(kit, loop, body)


# -- 3. Bounded ---------------------------------------------------------------------


@EXAMPLES
@given(queue_size=st.integers(1, 6), concurrency=st.integers(1, 3), events=st.integers(5, 40))
def bounded(kit: BrokerKit, loop: Loop, queue_size: int, concurrency: int, events: int) -> None:
    """A consumer never holds more than queue_size waiting plus concurrency running,
    however much waits on the broker."""

    async def body(ns: str) -> None:
        consumer = dispatcher(
            kit.transport(ns, "svc"), queue_size=queue_size, concurrency=concurrency
        )
        gate = anyio.Event()
        seen: list[int] = []
        worst = [0, 0]

        def look() -> None:
            stats = consumer.stats(Item)
            worst[0] = max(worst[0], stats.queued)
            worst[1] = max(worst[1], stats.in_flight)

        @consumer.on(Item)
        async def handle(item: Item) -> None:
            look()
            await gate.wait()
            seen.append(item.n)

        publisher = dispatcher(kit.transport(ns, "publisher"))
        async with publisher, consumer:
            for n in range(events):
                await publisher.publish(Item(n))
            held = min(events, queue_size + concurrency)
            # the consumer fills up to its bound and stops fetching there
            await until(lambda: sum(held_now(consumer)) >= held)
            for _ in range(20):
                look()
                await anyio.sleep(0.005)
            gate.set()
            await until(lambda: len(seen) >= events)
            await consumer.drain()
        assert worst[0] <= queue_size
        assert worst[1] <= concurrency
        assert sorted(set(seen)) == list(range(events))

    run(kit, loop, body)


# -- 6. Isolated --------------------------------------------------------------------


@EXAMPLES
@given(fails=st.lists(st.booleans(), min_size=1, max_size=20))
def isolated(kit: BrokerKit, loop: Loop, fails: list[bool]) -> None:
    """A handler that raises harms no other handler and no later event; each failure
    is reported once and dead-lettered."""

    async def body(ns: str) -> None:
        errors: list[Any] = []
        letters: list[DeadLetter] = []
        consumer = dispatcher(
            kit.transport(ns, "svc"),
            on_error=lambda event, handler, exc: errors.append(event),
            on_dead_letter=letters.append,
        )
        calm: list[int] = []
        touchy: list[int] = []

        @consumer.on(Item)
        async def fragile(item: Item) -> None:
            touchy.append(item.n)
            if item.fail:
                raise RuntimeError(item.n)

        @consumer.on(Item)
        async def steady(item: Item) -> None:
            calm.append(item.n)

        publisher = dispatcher(kit.transport(ns, "publisher"))
        async with publisher, consumer:
            for n, fail in enumerate(fails):
                await publisher.publish(Item(n, fail=fail))
            await until(lambda: len(set(calm)) >= len(fails))
            await consumer.drain()
        failing = [n for n, fail in enumerate(fails) if fail]
        assert sorted(set(calm)) == list(range(len(fails)))
        assert sorted(set(touchy)) == list(range(len(fails)))
        assert sorted({e.n for e in errors}) == failing
        assert (
            sorted({x.event.n for x in letters if x.reason is DeadLetterReason.HANDLER_FAILED})
            == failing
        )
        assert consumer.stats(Item).failed >= len(failing)

    run(kit, loop, body)


# -- 7. Clean shutdown ------------------------------------------------------------------


@EXAMPLES
@given(
    events=st.integers(1, 40),
    cut_after=st.integers(0, 40),
    shutdown_timeout=st.sampled_from([0.0, 0.01, 5.0]),
)
def clean_shutdown(
    kit: BrokerKit, loop: Loop, events: int, cut_after: int, shutdown_timeout: float
) -> None:
    """Leaving ``async with`` at any point loses nothing: what was not handled in
    time stays on the broker for the next consumer; publish after close raises."""

    async def body(ns: str) -> None:
        seen: list[int] = []
        first = dispatcher(kit.transport(ns, "svc"), shutdown_timeout=shutdown_timeout)

        @first.on(Item)
        async def slow(item: Item) -> None:
            await anyio.sleep(0.002)
            seen.append(item.n)

        publisher = dispatcher(kit.transport(ns, "publisher"))
        async with publisher:
            for n in range(events):
                await publisher.publish(Item(n))
        async with first:
            await until(lambda: len(seen) >= min(cut_after, events))
        for method in (first.publish, publisher.publish):
            try:
                await method(Item(-1))
            except DispatcherClosed:
                pass
            else:  # pragma: no cover - the assertion below reports it
                raise AssertionError("publish after close must raise DispatcherClosed")
        second = dispatcher(kit.transport(ns, "svc"))
        second.subscribe(Item, slow)
        async with second:
            await until(lambda: set(seen) >= set(range(events)))
            await second.drain()
        counts = Counter(seen)
        assert set(counts) == set(range(events))

    run(kit, loop, body)


# -- 9. Bad input gets a clear error --------------------------------------------------


@EXAMPLES
@given(garbage=st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=4))
def bad_input(kit: BrokerKit, loop: Loop, garbage: list[bytes]) -> None:
    """A non-event, an unencodable or oversized event raise typed errors at publish;
    malformed messages on the wire become dead letters; nothing crashes."""

    async def body(ns: str) -> None:
        letters: list[DeadLetter] = []
        consumer = dispatcher(kit.transport(ns, "svc"), on_dead_letter=letters.append)
        seen: list[int] = []

        @consumer.on(Item)
        async def handle(item: Item) -> None:
            seen.append(item.n)

        publisher = dispatcher(kit.transport(ns, "publisher"))
        async with publisher:
            try:
                await publisher.publish(42)
            except InvalidEvent:
                pass
            else:  # pragma: no cover
                raise AssertionError("a non-event must raise InvalidEvent")
            try:
                await publisher.publish(Opaque(object()))
            except EncodeError:
                pass
            else:  # pragma: no cover
                raise AssertionError("an unencodable event must raise EncodeError")
            try:
                await publisher.publish(Item(0, blob="x" * 2_000_000))
            except MessageTooLarge:
                pass
            else:  # pragma: no cover
                raise AssertionError("an oversized event must raise MessageTooLarge")
            for data in garbage:
                await kit.write_raw(ns, "contract.item", data)
            await publisher.publish(Item(1))
        async with consumer:
            await until(lambda: seen == [1] and len(letters) >= len(garbage))
        assert [x.reason for x in letters] == [DeadLetterReason.UNDECODABLE] * len(garbage)
        assert all(x.exception is not None for x in letters)

    run(kit, loop, body)
