"""The NATS JetStream transport against a real server (the machine's, unique streams).

Skipped with a message when no server answers on 127.0.0.1:4222, except under
``CI=true`` / ``EVENTCORE_REQUIRE_BROKERS=1``, where they must run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import nats
import pytest

from eventcore import (
    BrokerStats,
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    DispatcherClosed,
    InvalidConfiguration,
    Overflow,
    PublishTimeout,
    QueueFull,
    TransportError,
)
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

from ._servers import NATS_URL, require
from .nats_kit import nats_transports

pytestmark = pytest.mark.anyio

LIMIT = 20.0
Make = Callable[..., NatsTransport]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    url = urlsplit(NATS_URL)
    require("NATS", url.hostname or "127.0.0.1", url.port or 4222)
    async with nats_transports() as factory:
        yield factory


@event("tests.nats.order")
@dataclass(frozen=True)
class Order:
    n: int
    fail: bool = False


@event("tests.nats.keyed")
@dataclass(frozen=True)
class Keyed:
    account: str
    n: int


@event("tests.nats.other")
@dataclass(frozen=True)
class Other:
    n: int


async def until(predicate: Callable[[], bool]) -> None:
    """Poll what another process (the broker) changes; the test's fail_after bounds it."""
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_published_events_are_handled_once_and_acked(make: Make) -> None:
    transport = make()
    bus = Dispatcher(transport=transport, queue_size=16)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(50):
                assert await bus.publish(Order(n))
            await until(lambda: len(seen) == 50)
            await until(lambda: bus.stats(Order).broker.acked == 50)  # type: ignore[union-attr]
            stats = bus.stats(Order)
    assert sorted(seen) == list(range(50))
    assert stats.broker is not None
    assert stats.broker.pending == 0
    assert (stats.broker.nacked, stats.broker.terminated, stats.broker.redelivered) == (0, 0, 0)


async def test_one_group_shares_the_work_another_group_gets_a_copy(make: Make) -> None:
    seen: dict[str, list[int]] = {"a1": [], "a2": [], "b": []}
    buses = []
    for name, group in (("a1", "alpha"), ("a2", "alpha"), ("b", "beta")):
        bus = Dispatcher(transport=make(group), queue_size=4)

        async def handle(order: Order, name: str = name) -> None:
            seen[name].append(order.n)
            await anyio.sleep(0.001)

        bus.subscribe(Order, handle)
        buses.append(bus)
    producer = Dispatcher(transport=make("producer", groups=["alpha", "beta"]))
    with anyio.fail_after(LIMIT):
        async with producer, buses[0], buses[1], buses[2]:
            for n in range(200):
                await producer.publish(Order(n))
            await until(lambda: len(seen["a1"]) + len(seen["a2"]) == 200 and len(seen["b"]) == 200)
    alpha = seen["a1"] + seen["a2"]
    assert sorted(alpha) == list(range(200))  # each event once in the group
    assert sorted(seen["b"]) == list(range(200))  # and once in the other group


async def test_a_full_stream_follows_the_overflow_policy(make: Make) -> None:
    transport = make(max_msgs=3)
    bus = Dispatcher(transport=transport)  # nobody subscribes here: the stream fills
    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(3):
                assert await bus.publish(Order(n))
            bus.configure(Order, overflow=Overflow.RAISE)
            with pytest.raises(QueueFull, match="full"):
                await bus.publish(Order(3))
            bus.configure(Order, overflow=Overflow.DROP_NEWEST)
            assert await bus.publish(Order(4)) is False
            bus.configure(Order, overflow=Overflow.BLOCK)
            with pytest.raises(PublishTimeout):
                await bus.publish(Order(5), timeout=0.2)
    stats = bus.stats(Order)
    assert (stats.accepted, stats.dropped, stats.refused) == (0, 1, 2)


async def test_a_blocked_publish_goes_through_once_a_consumer_makes_room(make: Make) -> None:
    producer = Dispatcher(transport=make(max_msgs=2))
    consumer = Dispatcher(transport=make(max_msgs=2), queue_size=1)
    seen: list[int] = []
    gate = anyio.Event()

    @consumer.on(Order)
    async def handle(order: Order) -> None:
        await gate.wait()
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with producer, consumer:
            async with anyio.create_task_group() as group:
                for n in range(6):
                    group.start_soon(producer.publish, Order(n))
                await anyio.sleep(0.3)
                gate.set()
            await until(lambda: len(seen) == 6)
    assert sorted(seen) == list(range(6))


async def test_a_failed_event_is_dead_lettered_on_the_broker_and_acked(make: Make) -> None:
    letters: list[DeadLetter] = []
    transport = make()
    bus = Dispatcher(transport=transport, on_dead_letter=letters.append, on_error=lambda *a: None)
    handled: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        if order.fail:
            raise ValueError(order.n)
        handled.append(order.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Order(1, fail=True))
            await bus.publish(Order(2))
            await until(lambda: bus.stats(Order).broker.acked == 2)  # type: ignore[union-attr]
            stats = bus.stats(Order).broker
    assert handled == [2]
    assert [(letter.event, letter.reason) for letter in letters] == [
        (Order(1, fail=True), DeadLetterReason.HANDLER_FAILED)
    ]
    assert stats is not None
    assert stats.dead_lettered == 1
    stored = await _dead_letters(transport.prefix)
    assert [(m.headers or {}).get("Eventcore-Reason") for m in stored] == ["handler_failed"]


async def _dead_letters(prefix: str) -> list[Any]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{prefix}.dead.>", durable=None, stream=f"{prefix}_dead_letters"
        )
        try:
            return list(await sub.fetch(100, timeout=0.5))
        except nats.errors.TimeoutError:
            return []
    finally:
        await nc.close()


async def test_undecodable_messages_become_dead_letters_and_others_flow(make: Make) -> None:
    letters: list[DeadLetter] = []
    transport = make()
    bus = Dispatcher(transport=transport, on_dead_letter=letters.append)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    nc = await nats.connect(NATS_URL)
    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Order(1))  # creates the stream
            js = nc.jetstream()
            await js.publish(f"{transport.prefix}.service.tests.nats.order.0", b"\xff not json")
            await js.publish(f"{transport.prefix}.service.tests.nats.order.0", b'{"type": "nope"}')
            await bus.publish(Order(2))
            await until(lambda: len(seen) == 2 and len(letters) == 2)
            await until(lambda: bus.stats(Order).broker.terminated == 2)  # type: ignore[union-attr]
    await nc.close()
    assert sorted(seen) == [1, 2]
    assert {letter.reason for letter in letters} == {DeadLetterReason.UNDECODABLE}
    assert {type(letter.event) for letter in letters} == {bytes}


async def test_a_message_delivered_too_often_becomes_one_dead_letter(make: Make) -> None:
    letters: list[DeadLetter] = []
    transport = make(max_deliver=2, ack_wait=1.0)
    bus = Dispatcher(transport=transport, on_dead_letter=letters.append)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with bus:  # creates the stream and the consumer
            pass
        # a consumer that crashes: fetches twice without settling (max_deliver=2)
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await js.publish(
            f"{transport.prefix}.service.tests.nats.order.0",
            transport_codec_bytes(bus, Order(7)),
        )
        sub = await js.pull_subscribe_bind("service", transport.stream_of("tests.nats.order"))
        for _ in range(2):
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.nak()
        await nc.close()
        async with bus:
            await until(lambda: len(letters) == 1)
            await until(lambda: bus.stats(Order).broker.terminated == 1)  # type: ignore[union-attr]
    assert seen == []
    (letter,) = letters
    assert (letter.event, letter.reason, letter.attempts) == (
        Order(7),
        DeadLetterReason.DELIVERY_LIMIT,
        2,
    )


def transport_codec_bytes(bus: Dispatcher, event: Any) -> bytes:
    from eventcore.wire import Codec

    return Codec.for_dispatcher(bus).encode(event)


async def test_shutdown_gives_unhandled_events_back_to_the_group(make: Make) -> None:
    first = Dispatcher(transport=make(), queue_size=8, shutdown_timeout=0.1)
    started = anyio.Event()

    @first.on(Order)
    async def stuck(order: Order) -> None:
        started.set()
        await anyio.sleep(LIMIT)

    second = Dispatcher(transport=make(), queue_size=8)
    seen: list[int] = []

    @second.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with first:
            for n in range(5):
                await first.publish(Order(n))
            await started.wait()
            await until(lambda: first.stats(Order).accepted == 5)
        assert first.stats(Order).broker.nacked == 5  # type: ignore[union-attr]
        async with second:
            await until(lambda: len(seen) == 5)
    assert sorted(seen) == list(range(5))


async def test_events_of_one_key_are_handled_in_order_across_processes(make: Make) -> None:
    order_seen: dict[str, list[int]] = {}
    active: Counter[str] = Counter()
    overlaps: list[str] = []
    buses = []
    for _ in range(2):
        bus = Dispatcher(transport=make(partitions=4), concurrency=4)
        bus.configure(Keyed, key=lambda e: e.account)

        async def handle(event: Keyed) -> None:
            active[event.account] += 1
            if active[event.account] > 1:
                overlaps.append(event.account)
            await anyio.sleep(0.002)
            order_seen.setdefault(event.account, []).append(event.n)
            active[event.account] -= 1

        bus.subscribe(Keyed, handle)
        buses.append(bus)
    producer = Dispatcher(transport=make(partitions=4))
    producer.configure(Keyed, key=lambda e: e.account)
    accounts = [f"acct-{i}" for i in range(6)]
    with anyio.fail_after(LIMIT * 2):
        async with producer, buses[0], buses[1]:
            for n in range(20):
                for account in accounts:
                    await producer.publish(Keyed(account, n))
            await until(lambda: sum(map(len, order_seen.values())) == 120)
    assert overlaps == []
    assert order_seen == {account: list(range(20)) for account in accounts}
    assert sum(1 for bus in buses if bus.stats(Keyed).handled) == 2  # both processes worked


async def test_an_existing_consumer_that_does_not_match_is_reported(make: Make) -> None:
    bus = Dispatcher(transport=make(max_deliver=3))

    @bus.on(Order)
    async def handle(order: Order) -> None:
        pass

    async with bus:
        pass
    other = Dispatcher(transport=make(max_deliver=9))
    other.subscribe(Order, handle)
    with pytest.raises(InvalidConfiguration, match="max_deliver: 4 on the server, 10 here"):
        async with other:
            pytest.fail("must not start")


async def test_credentials_never_show(caplog: pytest.LogCaptureFixture) -> None:
    transport = NatsTransport("nats://alice:s3cret@127.0.0.1:1", group="g", connect_timeout=0.5)
    assert "s3cret" not in repr(transport)
    assert "alice" not in repr(transport)
    bus = Dispatcher(transport=transport)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransportError) as raised:
        async with bus:
            pass
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group": "has space"}, "group must be"),
        ({"group": "g", "prefix": "a.b"}, "prefix must be"),
        ({"group": "g", "partitions": 0}, "partitions must be"),
        ({"group": "g", "max_deliver": True}, "max_deliver must be"),
        ({"group": "g", "ack_wait": -1}, "ack_wait must be"),
        ({"group": "g", "max_msgs": 0}, "max_msgs must be"),
        ({"group": "g", "storage": "disk"}, "storage must be"),
        ({"group": "g", "format": "pickle"}, "format must be"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfiguration, match=message):
        NatsTransport(**options)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_a_nats_routed_type_refuses_to_start() -> None:
    bus = Dispatcher(transport=NatsTransport(group="g"))
    with pytest.raises(InvalidConfiguration, match="asyncio"):
        async with bus:
            pytest.fail("must not start")


async def test_the_trace_context_crosses_the_process_boundary(make: Make) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from eventcore.integrations.opentelemetry import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    producer = Dispatcher(transport=make())
    consumer = Dispatcher(transport=make(), handle_middleware=[tracing])
    done = anyio.Event()

    @consumer.on(Order)
    async def handle(order: Order) -> None:
        done.set()

    with anyio.fail_after(LIMIT):
        async with producer, consumer:
            await tracing.publish(producer, Order(1))
            await done.wait()
            await consumer.drain()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    send, process = spans["send Order"], spans["process Order"]
    assert process.context is not None
    assert send.context is not None
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id


async def test_other_types_stay_in_memory(make: Make) -> None:
    bus = Dispatcher()
    bus.configure(Order, transport=make())
    seen: list[Any] = []

    @bus.on(Order)
    async def orders(order: Order) -> None:
        seen.append(order)

    @bus.on(Other)
    async def others(other: Other) -> None:
        seen.append(other)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Other(1))
            await bus.publish(Order(1))
            await until(lambda: len(seen) == 2)
    assert bus.transport_of(Other) is None
    assert bus.stats(Other).broker is None
    assert bus.stats(Order).broker is not None


def test_the_scale_out_demo_shares_the_load_between_two_workers() -> None:
    import os
    import re
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    url = urlsplit(NATS_URL)
    require("NATS", url.hostname or "127.0.0.1", url.port or 4222)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "examples.nats_scaleout", "--seconds", "1.5"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "EVENTCORE_DEMO_PREFIX": "t" + uuid.uuid4().hex[:8]},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(
        r"(\d+) orders accepted \((\d+) refused.*: (\d+) \+ (\d+) = (\d+)", done.stdout
    )
    assert found, done.stdout[-2000:]
    accepted, _, first, second, handled = map(int, found.groups())
    assert accepted > 0
    assert handled == accepted
    assert first > 0
    assert second > 0  # both workers took a share


# -- regressions: the hostile tester's findings ------------------------------------------


@event("tests.nats.plain")
@dataclass
class Plain:
    """Not frozen: unhashable, like most dataclasses."""

    n: int


async def test_acks_of_a_batch_reach_the_server_when_shutdown_follows_a_failure(
    make: Make,
) -> None:
    first = Dispatcher(transport=make(ack_wait=3.0), on_error=lambda *a: None)
    first.configure(Order, concurrency=20, queue_size=20)
    gate = anyio.Event()

    @first.on(Order)
    async def handle(order: Order) -> None:
        await gate.wait()
        if order.fail:
            raise RuntimeError(order.n)

    with anyio.fail_after(LIMIT):
        async with first:
            for n in range(20):
                await first.publish(Order(n, fail=n == 0))
            await until(lambda: first.stats(Order).in_flight == 20)
            gate.set()
            await until(lambda: first.stats(Order).handled == 20)
    assert first.stats(Order).broker == BrokerStats(
        pending=first.stats(Order).broker.pending,  # type: ignore[union-attr]
        acked=20,
        dead_lettered=1,
    )
    again: list[int] = []
    second = Dispatcher(transport=make(ack_wait=3.0))
    second.subscribe(Order, lambda order: again.append(order.n))
    with anyio.fail_after(LIMIT):
        async with second:
            await anyio.sleep(0.5)
    assert again == []  # every ack went out: nothing came back


async def test_events_queued_when_the_type_is_unsubscribed_go_back_to_the_group(
    make: Make,
) -> None:
    bus = Dispatcher(transport=make(), queue_size=50)
    gate = anyio.Event()
    handled: list[int] = []

    async def handle(order: Order) -> None:
        handled.append(order.n)
        await gate.wait()

    subscription = bus.subscribe(Order, handle)
    other = Dispatcher(transport=make())
    later: list[int] = []
    other.subscribe(Order, lambda order: later.append(order.n))
    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(20):
                await bus.publish(Order(n))
            await until(lambda: bus.stats(Order).queued == 19)
            subscription.unsubscribe()
            gate.set()
            await until(lambda: bus.stats(Order).queued == 0)
        async with other:
            await until(lambda: len(later) == 19)
    assert handled == [0]
    assert sorted(later) == list(range(1, 20)), repr(later)


async def test_a_refused_write_to_one_of_two_groups_is_completed_without_copies(
    make: Make,
) -> None:
    only_b = Dispatcher(transport=make("b", max_msgs=3))
    producer = Dispatcher(transport=make("a", groups=["a", "b"], max_msgs=3))
    a = Dispatcher(transport=make("a", max_msgs=3))
    b = Dispatcher(transport=make("b", max_msgs=3))
    seen: dict[str, list[int]] = {"a": [], "b": []}
    a.subscribe(Plain, lambda e: seen["a"].append(e.n))
    b.subscribe(Plain, lambda e: seen["b"].append(e.n))
    late = Plain(99)  # not hashable: retried by identity
    with anyio.fail_after(LIMIT):
        async with only_b, producer:
            for n in range(3):
                await only_b.publish(Plain(n))  # b's stream is full, a's is empty
            with pytest.raises(PublishTimeout):  # stored for a, refused by b
                await producer.publish(late, timeout=0.3)
            async with a, b:
                await until(lambda: len(seen["b"]) == 3 and len(seen["a"]) == 1)
                assert await producer.publish(late, timeout=5)  # the same object again
                await until(lambda: len(seen["b"]) == 4)
                await anyio.sleep(0.3)
    assert seen == {"a": [99], "b": [0, 1, 2, 99]}  # one copy for each group


async def test_one_busy_key_is_not_slowed_by_idle_partitions(make: Make) -> None:
    bus = Dispatcher(transport=make(partitions=4, fetch_wait=2.0))
    bus.configure(Keyed, key=lambda e: e.account)
    seen: list[int] = []
    bus.subscribe(Keyed, lambda e: seen.append(e.n))
    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(6):
                await bus.publish(Keyed("busy", n))
            # each of the six waits one fetch: with 2 s per idle partition that was 12 s
            with anyio.fail_after(3.0):
                await until(lambda: len(seen) == 6)
    assert seen == list(range(6))


async def test_processes_of_one_group_with_another_layout_are_refused(make: Make) -> None:
    first = Dispatcher(transport=make(partitions=4))
    first.configure(Keyed, key=lambda e: e.account)
    first.subscribe(Keyed, lambda e: None)
    second = Dispatcher(transport=make(partitions=2))
    second.configure(Keyed, key=lambda e: e.account)
    second.subscribe(Keyed, lambda e: None)
    unkeyed = Dispatcher(transport=make())
    unkeyed.subscribe(Keyed, lambda e: None)
    with anyio.fail_after(LIMIT):
        async with first:
            for bus in (second, unkeyed):
                with pytest.raises(InvalidConfiguration, match="same key and partitions"):
                    async with bus:
                        pytest.fail("must not start")


async def test_a_message_over_the_servers_max_payload_is_refused_before_sending(
    make: Make,
) -> None:
    from eventcore.wire import MessageTooLarge

    bus = Dispatcher(transport=make())
    with anyio.fail_after(LIMIT):
        async with bus:
            with pytest.raises(MessageTooLarge):
                await bus.publish(Big("x" * (1024 * 1024 - 100)))
            assert await bus.publish(Other(2))  # the connection is fine


@event("tests.nats.big")
@dataclass(frozen=True)
class Big:
    text: str


@event("tests.nats.a_b")
@dataclass(frozen=True)
class Underscored:
    n: int


@event("tests.nats_a.b")
@dataclass(frozen=True)
class Dotted:
    n: int


async def test_names_that_differ_only_in_dots_and_underscores_get_their_own_streams(
    make: Make,
) -> None:
    transport = make()
    assert transport.stream_of("tests.nats.a_b") != transport.stream_of("tests.nats_a.b")
    bus = Dispatcher(transport=transport)
    seen: list[Any] = []
    bus.subscribe(Underscored, seen.append)
    bus.subscribe(Dotted, seen.append)
    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Underscored(1))
            await bus.publish(Dotted(2))
            await until(lambda: len(seen) == 2)


@pytest.mark.parametrize(
    "url",
    [
        "nats://alice:p@ss@127.0.0.1:1",
        "alice:s3cretpw@127.0.0.1:1",
        "nats://alice:s3cr/et@127.0.0.1:1",
        "nats://t0ken/xyz@127.0.0.1:1",
    ],
)
async def test_credentials_of_every_shape_stay_hidden(url: str) -> None:
    transport = NatsTransport(url, group="g", connect_timeout=0.3)
    secrets = ("p@ss", "s3cretpw", "s3cr/et", "t0ken")
    assert not [s for s in secrets if s in repr(transport)]
    with pytest.raises(TransportError) as raised:
        async with Dispatcher(transport=transport):
            pass
    assert not [s for s in secrets if s in str(raised.value)]


async def test_a_transport_serves_one_dispatcher_at_a_time(make: Make) -> None:
    transport = make()
    with anyio.fail_after(LIMIT):
        async with Dispatcher(transport=transport):
            with pytest.raises(InvalidConfiguration, match="already open"):
                async with Dispatcher(transport=transport):
                    pytest.fail("must not start")


async def test_a_publisher_waiting_on_a_full_stream_at_shutdown_gets_dispatcher_closed(
    make: Make,
) -> None:
    bus = Dispatcher(transport=make(max_msgs=2), shutdown_timeout=0.2)
    outcome: list[BaseException] = []

    async def blocked() -> None:
        try:
            await bus.publish(Order(3))
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as group, bus:
            await bus.publish(Order(1))
            await bus.publish(Order(2))
            group.start_soon(blocked)
            await anyio.sleep(0.2)
    assert [type(exc) for exc in outcome] == [DispatcherClosed]


async def test_pending_counts_every_partition(make: Make) -> None:
    producer = Dispatcher(transport=make(partitions=4))
    producer.configure(Keyed, key=lambda e: e.account)
    with anyio.fail_after(LIMIT):
        async with producer:
            for n in range(200):
                await producer.publish(Keyed(f"k{n % 16}", n))
        consumer = Dispatcher(transport=make(partitions=4), queue_size=4)
        consumer.configure(Keyed, key=lambda e: e.account)
        gate = anyio.Event()

        @consumer.on(Keyed)
        async def slow(event: Keyed) -> None:
            await gate.wait()

        async with consumer:
            await until(lambda: consumer.stats(Keyed).in_flight >= 1)
            await until(lambda: len(consumer.transport_of(Keyed)._routes[Keyed].pending_of) == 4)
            pending = consumer.stats(Keyed).broker.pending  # type: ignore[union-attr]
            gate.set()
    assert pending is not None
    assert pending >= 190  # all four partitions, not one of them (about 50)
