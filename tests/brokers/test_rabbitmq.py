"""The RabbitMQ transport against the machine's node (unique exchanges and queues,
deleted afterwards).

Skipped with a message when nothing answers on 127.0.0.1:5672, except under
``CI=true`` / ``EVENTCORE_REQUIRE_BROKERS=1``, where they must run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq
import anyio
import pytest

from eventcore import (
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    InvalidConfiguration,
    Overflow,
    PublishTimeout,
    QueueFull,
    TransportError,
)
from eventcore.transports.rabbitmq import RabbitMQTransport
from eventcore.wire import event

from .rabbit_support import RABBITMQ_URL as URL
from .rabbit_support import rabbit_transports, require_shared

pytestmark = pytest.mark.anyio

LIMIT = 20.0
Make = Callable[..., RabbitMQTransport]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio only here: the broker contract suite runs RabbitMQ on uvloop too."""
    return ("asyncio", {"use_uvloop": False})


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    async with rabbit_transports(require_shared()) as factory:
        yield factory


@event("tests.rabbit.order")
@dataclass(frozen=True)
class Order:
    n: int
    fail: bool = False


@event("tests.rabbit.keyed")
@dataclass(frozen=True)
class Keyed:
    account: str
    n: int


async def until(predicate: Callable[[], bool]) -> None:
    """Poll what another party (the broker) changes; the test's fail_after bounds it."""
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def raw_channel(url: str) -> tuple[Any, Any]:
    connection = await aiormq.connect(url)
    return connection, await connection.channel()


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
    assert (stats.broker.nacked, stats.broker.terminated, stats.broker.redelivered) == (0, 0, 0)


async def test_the_message_id_is_the_event_id_and_the_message_persistent(make: Make) -> None:
    transport = make("readers")
    bus = Dispatcher(transport=transport)
    with anyio.fail_after(LIMIT):
        async with bus:  # nobody handles Order here: the message stays in its queue
            await bus.publish(Order(1))
        connection, channel = await raw_channel(URL)
        try:
            message = await channel.basic_get(transport.queues_of(Order)[0], no_ack=True)
        finally:
            await connection.close()
    properties = message.header.properties
    envelope = json.loads(message.body)
    assert properties.message_id == envelope["id"]
    assert properties.delivery_mode == 2
    assert properties.message_type == "tests.rabbit.order"


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
        async with producer:  # before any consumer started: their queues keep the events
            for n in range(100):
                await producer.publish(Order(n))
        async with producer, buses[0], buses[1], buses[2]:
            for n in range(100, 200):
                await producer.publish(Order(n))
            await until(lambda: len(seen["a1"]) + len(seen["a2"]) >= 200 and len(seen["b"]) >= 200)
    assert sorted(seen["a1"] + seen["a2"]) == list(range(200))  # each event once in the group
    assert sorted(seen["b"]) == list(range(200))  # and once in the other group
    assert seen["a1"]  # both processes of alpha took a share
    assert seen["a2"]


@pytest.mark.parametrize(
    ("overflow", "outcome"),
    [(Overflow.DROP_NEWEST, False), (Overflow.RAISE, QueueFull), (Overflow.BLOCK, PublishTimeout)],
)
async def test_a_full_queue_follows_the_overflow_policy(
    make: Make, overflow: Overflow, outcome: Any
) -> None:
    bus = Dispatcher(transport=make(max_length=3), overflow=overflow)
    with anyio.fail_after(LIMIT):
        async with bus:  # no handler: the queue fills up
            for n in range(3):
                assert await bus.publish(Order(n)) is True
            if outcome is False:
                assert await bus.publish(Order(3)) is False
            else:
                with pytest.raises(outcome) as refused:
                    await bus.publish(Order(3), timeout=0.3)
                assert refused.value.event_type is Order
    stats = bus.stats(Order)
    assert (stats.dropped, stats.refused) == ((1, 0) if outcome is False else (0, 1))


async def test_a_blocked_publish_goes_through_once_a_consumer_makes_room(make: Make) -> None:
    producer = Dispatcher(transport=make(max_length=2))
    consumer = Dispatcher(transport=make(max_length=2))
    seen: list[int] = []

    @consumer.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with producer:
            for n in range(2):
                await producer.publish(Order(n))
            async with anyio.create_task_group() as group:

                async def later() -> None:
                    await anyio.sleep(0.3)
                    async with consumer:
                        await until(lambda: len(seen) == 5)

                group.start_soon(later)
                for n in range(2, 5):
                    assert await producer.publish(Order(n), timeout=LIMIT)
    assert sorted(seen) == list(range(5))


async def test_a_failed_event_is_dead_lettered_with_its_reason_and_acked(make: Make) -> None:
    transport = make()
    bus = Dispatcher(transport=transport)
    letters: list[DeadLetter] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        if order.fail:
            raise ValueError("no")

    @bus.on(DeadLetter)
    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Order(1, fail=True))
            await bus.publish(Order(2))
            await until(lambda: bus.stats(Order).broker.dead_lettered == 1)  # type: ignore[union-attr]
            await until(lambda: bus.stats(Order).broker.acked == 2)  # type: ignore[union-attr]
        connection, channel = await raw_channel(URL)
        try:
            message = await channel.basic_get(f"{transport.prefix}.dead_letters", no_ack=True)
        finally:
            await connection.close()
    assert [letter.reason for letter in letters] == [DeadLetterReason.HANDLER_FAILED]
    headers = message.header.properties.headers
    assert headers["eventcore-reason"] == "handler_failed"
    assert headers["eventcore-group"] == "service"
    assert b'"n":1' in message.body


async def test_undecodable_messages_become_dead_letters_and_others_flow(make: Make) -> None:
    transport = make()
    bus = Dispatcher(transport=transport)
    letters: list[DeadLetter] = []
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    @bus.on(DeadLetter)
    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.publish(Order(1))
            connection, channel = await raw_channel(URL)
            try:
                await channel.basic_publish(
                    b"not an envelope", exchange=transport.prefix, routing_key="tests.rabbit.order"
                )
            finally:
                await connection.close()
            await bus.publish(Order(2))
            await until(lambda: len(seen) == 2 and len(letters) == 1)
            await until(lambda: bus.stats(Order).broker.terminated == 1)  # type: ignore[union-attr]
    assert letters[0].reason is DeadLetterReason.UNDECODABLE
    assert letters[0].event == b"not an envelope"


async def test_a_message_delivered_too_often_becomes_one_dead_letter(make: Make) -> None:
    transport = make(max_deliver=2)
    bus = Dispatcher(transport=transport)
    letters: list[DeadLetter] = []
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    @bus.on(DeadLetter)
    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    with anyio.fail_after(LIMIT):
        async with Dispatcher(transport=make(max_deliver=2)) as producer:
            await producer.publish(Order(7))
        # two deliveries given back (as two crashed consumers would): the budget is spent
        connection, channel = await raw_channel(URL)
        try:
            queue = f"{transport.prefix}.service.tests.rabbit.order"
            for _ in range(2):
                got = await channel.basic_get(queue)
                await channel.basic_nack(got.delivery.delivery_tag, requeue=True)
        finally:
            await connection.close()
        async with bus:
            await until(lambda: len(letters) == 1)
            await until(lambda: bus.stats(Order).broker.dead_lettered == 1)  # type: ignore[union-attr]
    assert seen == []
    assert letters[0].reason is DeadLetterReason.DELIVERY_LIMIT
    assert letters[0].attempts == 2
    assert letters[0].event == Order(7)


async def test_shutdown_gives_unhandled_events_back_to_the_group(make: Make) -> None:
    first = Dispatcher(transport=make(), queue_size=8, shutdown_timeout=0.2)
    started = anyio.Event()

    @first.on(Order)
    async def slow(order: Order) -> None:
        started.set()
        await anyio.sleep(LIMIT)

    seen: list[int] = []
    second = Dispatcher(transport=make(), queue_size=8)

    @second.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with first:
            for n in range(5):
                await first.publish(Order(n))
            await started.wait()
        async with second:
            await until(lambda: set(seen) >= set(range(5)))
    assert first.stats(Order).broker.nacked >= 4  # type: ignore[union-attr]


async def test_acks_of_later_messages_never_cover_one_still_running(make: Make) -> None:
    first = Dispatcher(transport=make(), queue_size=16, concurrency=2, shutdown_timeout=0.3)
    handled: list[int] = []

    @first.on(Order)
    async def handle(order: Order) -> None:
        if order.n == 3:
            await anyio.sleep(LIMIT)  # still running when the dispatcher shuts down
        handled.append(order.n)

    later: list[int] = []
    second = Dispatcher(transport=make())

    @second.on(Order)
    async def take_over(order: Order) -> None:
        later.append(order.n)

    with anyio.fail_after(LIMIT):
        async with first:
            for n in range(10):
                await first.publish(Order(n))
            await until(lambda: len(handled) == 9)
            await until(lambda: first.stats(Order).broker.acked == 9)  # type: ignore[union-attr]
        async with second:
            await until(lambda: later == [3])  # given back, not acked with the others
            await anyio.sleep(0.2)
    assert later == [3]


async def test_acks_of_messages_handled_out_of_order_keep_the_channel(make: Make) -> None:
    """A message acknowledged alone (the one before it still ran) must not be named
    again by the batched ack that follows: RabbitMQ would close the channel."""
    transport = make()
    bus = Dispatcher(transport=transport, queue_size=8, concurrency=2)
    handled: list[int] = []
    second_done = anyio.Event()

    @bus.on(Order)
    async def handle(order: Order) -> None:
        if order.n == 0:
            await second_done.wait()
            await until(lambda: transport.broker_stats(Order).acked >= 1)
            await anyio.sleep(0.05)  # the ack of 1 went out on its own
        handled.append(order.n)
        if order.n == 1:
            second_done.set()

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(2):
                await bus.publish(Order(n))
            await until(lambda: len(handled) == 2)
            for n in range(2, 6):  # the channel still delivers, and nothing comes twice
                await bus.publish(Order(n))
            await until(lambda: len(handled) >= 6)
            await until(lambda: transport.broker_stats(Order).acked >= 6)
            await anyio.sleep(0.2)
        again: list[int] = []
        later = Dispatcher(transport=make())

        @later.on(Order)
        async def redelivered(order: Order) -> None:
            again.append(order.n)

        async with later:
            await anyio.sleep(0.3)
    assert handled[:2] == [1, 0]
    assert sorted(handled) == list(range(6))  # each once
    assert again == []  # every message was acknowledged


async def test_events_of_one_key_are_handled_in_order_by_one_process(make: Make) -> None:
    seen: dict[str, list[tuple[str, int]]] = {"p1": [], "p2": []}
    buses = []
    for name in ("p1", "p2"):
        bus = Dispatcher(transport=make(partitions=4), queue_size=16, concurrency=4)
        bus.configure(Keyed, key=lambda e: e.account)

        async def handle(event: Keyed, name: str = name) -> None:
            seen[name].append((event.account, event.n))
            await anyio.sleep(0.001)

        bus.subscribe(Keyed, handle)
        buses.append(bus)
    with anyio.fail_after(LIMIT):
        async with buses[0], buses[1]:
            for n in range(200):
                await buses[n % 2].publish(Keyed(f"acct{n % 5}", n))
            await until(lambda: len(seen["p1"]) + len(seen["p2"]) == 200)
    for events in seen.values():
        per_key: dict[str, list[int]] = {}
        for account, n in events:
            per_key.setdefault(account, []).append(n)
        for numbers in per_key.values():
            assert numbers == sorted(numbers)
    owners = Counter((account, name) for name, events in seen.items() for account, _ in events)
    assert len({account for account, _ in owners}) == len(owners)  # one process per key


async def test_an_existing_queue_with_other_arguments_is_reported_never_changed(
    make: Make,
) -> None:
    async with Dispatcher(transport=make(max_deliver=3)) as bus:
        await bus.publish(Order(1))
    other = Dispatcher(transport=make(max_deliver=4))

    @other.on(Order)
    async def handle(order: Order) -> None:
        pass

    with pytest.raises(InvalidConfiguration, match="x-delivery-limit"):
        async with other:
            pass
    async with Dispatcher(transport=make(max_deliver=3)) as bus:  # still as it was
        assert await bus.publish(Order(2))


async def test_a_publisher_of_other_groups_does_not_repeat_their_settings(make: Make) -> None:
    consumer = Dispatcher(transport=make("workers", max_deliver=3, max_length=100))
    seen: list[int] = []

    @consumer.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    producer = Dispatcher(transport=make("api", groups=["workers"]))
    with anyio.fail_after(LIMIT):
        async with consumer, producer:
            await producer.publish(Order(1))
            await until(lambda: seen == [1])


async def test_a_queue_deleted_under_a_publisher_is_declared_again(make: Make) -> None:
    transport = make()
    with anyio.fail_after(LIMIT):
        async with Dispatcher(transport=transport) as bus:
            await bus.publish(Order(1))
            connection, channel = await raw_channel(URL)
            try:
                await channel.queue_delete(transport.queues_of(Order)[0])
            finally:
                await connection.close()
            assert await bus.publish(Order(2))  # returned, declared again, published again
            connection, channel = await raw_channel(URL)
            try:
                ok = await channel.queue_declare(transport.queues_of(Order)[0], passive=True)
            finally:
                await connection.close()
    assert ok.message_count == 1


async def test_an_exchange_deleted_under_a_publisher_is_declared_again(make: Make) -> None:
    transport = make()
    with anyio.fail_after(LIMIT):
        async with Dispatcher(transport=transport) as bus:
            await bus.publish(Order(1))
            connection, channel = await raw_channel(URL)
            try:
                await channel.exchange_delete(transport.prefix)
            finally:
                await connection.close()
            assert await bus.publish(Order(2))  # refused, declared again, published again
            assert await bus.publish(Order(3))
            connection, channel = await raw_channel(URL)
            try:
                ok = await channel.queue_declare(transport.queues_of(Order)[0], passive=True)
            finally:
                await connection.close()
    assert ok.message_count == 3


async def test_the_keyed_queues_have_a_single_active_consumer(make: Make) -> None:
    transport = make(partitions=3)
    bus = Dispatcher(transport=transport)
    bus.configure(Keyed, key=lambda e: e.account)
    async with bus:
        await bus.publish(Keyed("a", 1))
        queues = transport.queues_of(Keyed)
        connection, channel = await raw_channel(URL)
        try:
            arguments = {"x-queue-type": "quorum", "x-single-active-consumer": True}
            for queue in queues:  # declaring without the argument would be refused
                with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                    await channel.queue_declare(queue, durable=True, arguments={})
                channel = await connection.channel()
                await channel.queue_declare(
                    queue,
                    durable=True,
                    arguments={
                        **arguments,
                        "x-delivery-limit": 5,
                        "x-dead-letter-exchange": f"{transport.prefix}.dead",
                    },
                )
        finally:
            await connection.close()
    base = f"{transport.prefix}.service.tests.rabbit.keyed"
    assert queues == [base, f"{base}.1", f"{base}.2"]
    assert [transport.stream_of(Keyed, p) for p in range(3)] == queues


def test_stream_of_has_the_shape_of_the_other_transports_and_works_before_open() -> None:
    transport = RabbitMQTransport(group="billing", prefix="p", partitions=4)
    assert transport.stream_of(Order) == "p.billing.tests.rabbit.order"
    assert transport.stream_of("tests.rabbit.order", 0, group="billing") == (
        "p.billing.tests.rabbit.order"
    )
    assert transport.stream_of(Keyed, 2, group="audit") == "p.audit.tests.rabbit.keyed.2"


async def test_the_prefetch_is_the_local_room(make: Make) -> None:
    transport = make()
    bus = Dispatcher(transport=transport, queue_size=8, concurrency=1)
    release = anyio.Event()

    @bus.on(Order)
    async def handle(order: Order) -> None:
        await release.wait()

    async with Dispatcher(transport=make()) as producer:
        for n in range(60):
            await producer.publish(Order(n))
    with anyio.fail_after(LIMIT):
        async with bus:
            await until(lambda: bus.stats(Order).queued >= 7)
            await anyio.sleep(0.3)  # what RabbitMQ would push beyond the prefetch
            connection, channel = await raw_channel(URL)
            try:
                ok = await channel.queue_declare(transport.queues_of(Order)[0], passive=True)
            finally:
                await connection.close()
            release.set()
    assert 60 - ok.message_count <= 8 + 1  # queue_size waiting, concurrency running


async def test_an_unreachable_node_fails_start_at_once_with_a_typed_error() -> None:
    from eventcore.transports._kit import BrokerUnavailable

    transport = RabbitMQTransport("amqp://guest:secret@127.0.0.1:1/", group="g")
    bus = Dispatcher(transport=transport)
    with anyio.fail_after(LIMIT), pytest.raises(BrokerUnavailable) as failed:
        async with bus:
            pass
    assert "secret" not in str(failed.value)
    assert "RabbitMQ" in str(failed.value)


async def test_wrong_credentials_say_so(caplog: pytest.LogCaptureFixture) -> None:
    require_shared()
    transport = RabbitMQTransport("amqp://guest:wrong@127.0.0.1:5672/", group="g")
    with (
        caplog.at_level(logging.DEBUG),
        anyio.fail_after(LIMIT),
        pytest.raises(TransportError) as failed,
    ):
        async with Dispatcher(transport=transport):
            pass
    assert "ACCESS_REFUSED" in str(failed.value)  # the server's own reason, at once
    assert "wrong" not in str(failed.value)
    assert "wrong" not in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group": "a b"}, "group"),
        ({"group": "g", "partitions": 0}, "partitions"),
        ({"group": "g", "max_deliver": 0}, "max_deliver"),
        ({"group": "g", "max_length": -1}, "max_length"),
        ({"group": "g", "groups": "a"}, "groups"),
        ({"group": "g", "publish_timeout": 0}, "publish_timeout"),
        ({"group": "g", "format": "xml"}, "format"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfiguration, match=message):
        RabbitMQTransport(**options)


def test_a_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(InvalidConfiguration, match="amqp"):
        RabbitMQTransport("nats://127.0.0.1:4222", group="g")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_a_rabbitmq_routed_type_refuses_to_start() -> None:
    bus = Dispatcher(transport=RabbitMQTransport(group="g"))
    with pytest.raises(InvalidConfiguration, match="asyncio"):
        async with bus:
            pass


def test_the_demo_shares_the_orders_and_keeps_each_customer_with_one_worker() -> None:
    require_shared()
    done = subprocess.run(
        [sys.executable, "-m", "examples.rabbitmq_demo", "--seconds", "1"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("  w")]
    assert len(lines) == 2, done.stdout
    assert all("each in order: True" in line for line in lines), done.stdout
    orders = [int(line.split(":")[1].split("orders")[0]) for line in lines]
    assert all(count > 0 for count in orders), done.stdout  # both took a share
    customers = [int(line.split("payments of ")[1].split()[0]) for line in lines]
    # a customer's payments stay with one worker; the first to stop hands its
    # partitions over with what it had not handled yet (in order)
    assert 5 <= sum(customers) <= 10, done.stdout
