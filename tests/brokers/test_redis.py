"""The Redis Streams transport against the machine's Redis (127.0.0.1:6379).

Every test writes under a key prefix of its own, deleted afterwards. Without a
server the tests skip with a message; under ``CI=true`` they fail instead. They
run on asyncio and uvloop; on trio the transport refuses with a clear error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from eventcore import (
    DeadLetter,
    DeadLetterReason,
    Dispatcher,
    InvalidConfiguration,
    Overflow,
    QueueFull,
)
from eventcore.transports.redis import GroupVanished, RedisTransport
from eventcore.wire import event

from ._history import check
from .redis_support import LIMIT, raw_client, shared_redis, unique_prefix, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def url() -> str:
    return shared_redis()


@pytest.fixture
def prefix(url: str) -> Iterator[str]:
    with unique_prefix(url) as name:
        yield name


@event("test.orders", version=1)
@dataclass(frozen=True)
class Order:
    n: int
    account: str = "a"
    fail: bool = False


@event("test.other", version=1)
@dataclass(frozen=True)
class Other:
    n: int


def transport(url: str, prefix: str, group: str = "svc", **options: Any) -> RedisTransport:
    return RedisTransport(url, group=group, prefix=prefix, **options)


def bus_on(t: RedisTransport, **options: Any) -> Dispatcher:
    bus = Dispatcher(transport=t, **options)
    bus.register(Order)
    bus.register(Other)
    return bus


async def test_two_processes_of_one_service_share_the_events_once(url: str, prefix: str) -> None:
    seen: list[tuple[str, int]] = []
    publisher = bus_on(transport(url, prefix))
    consumers = [bus_on(transport(url, prefix), queue_size=8) for _ in range(2)]
    for index, consumer in enumerate(consumers):

        async def handle(order: Order, index: int = index) -> None:
            seen.append((str(index), order.n))

        consumer.subscribe(Order, handle)
    published = []
    with anyio.fail_after(LIMIT):
        async with publisher, consumers[0], consumers[1]:
            for n in range(200):
                assert await publisher.publish(Order(n))
                published.append(str(n))
            await until(lambda: len(seen) >= 200)
            await consumers[0].drain()
            await consumers[1].drain()
    check(published, [str(n) for _, n in seen]).assert_clean()
    assert {who for who, _ in seen} == {"0", "1"}  # both took a share


async def test_each_service_gets_its_own_copy_from_the_stream_start(url: str, prefix: str) -> None:
    publisher = bus_on(transport(url, prefix))
    async with publisher:  # published before any consumer exists
        for n in range(20):
            await publisher.publish(Order(n))
    seen: dict[str, list[int]] = {"billing": [], "audit": []}
    consumers = []
    for group, got in seen.items():
        consumer = bus_on(transport(url, prefix, group=group))

        async def handle(order: Order, got: list[int] = got) -> None:
            got.append(order.n)

        consumer.subscribe(Order, handle)
        consumers.append(consumer)
    with anyio.fail_after(LIMIT):
        async with consumers[0], consumers[1]:
            await until(lambda: all(len(v) >= 20 for v in seen.values()))
    assert seen == {"billing": list(range(20)), "audit": list(range(20))}


async def test_a_full_stream_follows_the_overflow_policy_and_trims_nothing_unread(
    url: str, prefix: str
) -> None:
    t = transport(url, prefix, max_len=10)
    bus = bus_on(t)
    bus.configure(Order, overflow=Overflow.RAISE)
    seen: list[int] = []
    consumer = bus_on(transport(url, prefix, max_len=10))

    @consumer.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    with anyio.fail_after(LIMIT):
        async with consumer:  # creates the group: from now on the stream keeps entries
            pass
        async with bus:
            for n in range(10):
                await bus.publish(Order(n))
            with pytest.raises(QueueFull, match="max_len=10"):
                await bus.publish(Order(10))
            bus.configure(Order, overflow=Overflow.DROP_NEWEST)
            assert not await bus.publish(Order(11))
            async with consumer:
                await until(lambda: len(seen) == 10)
                await consumer.drain()
            # acknowledged entries are trimmed at the limit: room again
            for n in range(20, 30):
                assert await bus.publish(Order(n))
    assert seen == list(range(10))
    assert bus.stats(Order).dropped == 1


async def test_a_failed_handler_dead_letters_on_the_stream_and_acks(url: str, prefix: str) -> None:
    t = transport(url, prefix)
    letters: list[DeadLetter] = []
    bus = bus_on(t, on_dead_letter=letters.append, on_error=lambda *a: None)

    @bus.on(Order)
    async def handle(order: Order) -> None:
        if order.fail:
            raise ValueError(order.n)

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(4):
                await bus.publish(Order(n, fail=n == 2))
            await until(lambda: bus.stats(Order).handled == 4)
            await until(lambda: t.broker_stats(Order).dead_lettered == 1)
            assert t.broker_stats(Order).acked == 4
            # the stats name this process's consumer (host, pid, a random part)
            assert bus.stats(Order).broker.consumer == t.consumer  # type: ignore[union-attr]
            assert str(os.getpid()) in t.consumer
    assert [letter.reason for letter in letters] == [DeadLetterReason.HANDLER_FAILED]
    client = raw_client(url)
    try:
        dead = await client.xrange(f"{prefix}:dead:test.orders")
        assert len(dead) == 1
        assert dead[0][1][b"reason"] == b"handler_failed"
        assert b'"fail":true' in dead[0][1][b"m"]
        pending = await client.xpending(f"{prefix}:test.orders", "svc")
        assert pending["pending"] == 0
    finally:
        await client.aclose()


async def test_undecodable_entries_become_dead_letters_not_crashes(url: str, prefix: str) -> None:
    t = transport(url, prefix)
    letters: list[DeadLetter] = []
    bus = bus_on(t, on_dead_letter=letters.append)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    client = raw_client(url)
    stream = f"{prefix}:test.orders"
    try:
        await client.xadd(stream, {b"m": b"\x00 not an envelope"})
        await client.xadd(stream, {b"m": b'{"type":"nobody.knows","id":"x","version":1}'})
        await client.xadd(stream, {b"other": b"no message field"})
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.publish(Order(1))
                await until(lambda: seen == [1] and t.broker_stats(Order).dead_lettered == 3)
        reasons = [letter.reason for letter in letters]
        assert reasons == [DeadLetterReason.UNDECODABLE] * 3
        assert "unknown event type 'nobody.knows'" in str(letters[1].exception)
        assert len(await client.xrange(f"{prefix}:dead:test.orders")) == 3
        assert (await client.xpending(stream, "svc"))["pending"] == 0
    finally:
        await client.aclose()


async def test_entries_left_pending_at_shutdown_are_read_again_on_restart(
    url: str, prefix: str
) -> None:
    t = transport(url, prefix)
    bus = bus_on(t, queue_size=4, shutdown_timeout=0.05)
    seen: list[int] = []
    release = anyio.Event()

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)
        await release.wait()  # the first run ends before any handler returns

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(6):
                await bus.publish(Order(n))
            await until(lambda: len(seen) == 1)
        assert t.broker_stats(Order).nacked >= 1
        release.set()
        async with bus:  # the same consumer: its own pending entries first
            await until(lambda: len(set(seen)) == 6)
            await bus.drain()
    assert sorted(set(seen)) == list(range(6))
    assert seen.count(0) == 2  # the one cut off in its handler came back (same event)


async def test_a_vanished_group_is_reported_and_not_recreated(
    url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = transport(url, prefix)
    bus = bus_on(t)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    client = raw_client(url)
    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.publish(Order(1))
                await until(lambda: seen == [1])
                await client.delete(f"{prefix}:test.orders")  # as a restart without AOF would
                await until(lambda: GroupVanished.__name__ in caplog.text)
                assert "recreate_group=True" in caplog.text
                await bus.publish(Order(2))  # the stream is back, its group is not
                assert await client.xinfo_groups(f"{prefix}:test.orders") == []
    finally:
        await client.aclose()
    assert seen == [1]


async def test_recreate_group_reads_the_new_stream_from_its_start(url: str, prefix: str) -> None:
    t = transport(url, prefix, recreate_group=True)
    bus = bus_on(t)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    client = raw_client(url)
    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.publish(Order(1))
                await until(lambda: seen == [1])
                await client.delete(f"{prefix}:test.orders")
                await bus.publish(Order(2))  # before the group is recreated: not skipped
                await until(lambda: seen == [1, 2])
    finally:
        await client.aclose()


async def test_entries_over_max_deliver_are_dead_lettered_unhandled(url: str, prefix: str) -> None:
    t = transport(url, prefix, max_deliver=3, claim_idle=0.05)
    letters: list[DeadLetter] = []
    bus = bus_on(t, on_dead_letter=letters.append)
    seen: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        seen.append(order.n)

    publisher = bus_on(transport(url, prefix))
    client = raw_client(url)
    stream = f"{prefix}:test.orders"
    try:
        async with publisher:
            await publisher.publish(Order(1))
            await publisher.publish(Order(2))
        await client.xgroup_create(stream, "svc", id="0")
        # a consumer that crashed again and again with both entries
        taken = await client.xreadgroup("svc", "crashed", {stream: ">"}, count=2)
        first, second = (entry for entry, _ in taken[0][1])
        await client.xclaim(stream, "svc", "crashed", 0, [first], retrycount=5)
        await client.xclaim(stream, "svc", "crashed", 0, [second], retrycount=1)
        with anyio.fail_after(LIMIT):
            async with bus:
                await until(lambda: seen == [2] and t.broker_stats(Order).dead_lettered == 1)
        # attempts: the deliveries before this one, which only dead-letters it (as on
        # NATS; issue 20, defect 8: it said 6, counting that last one too)
        assert [(x.reason, x.event, x.attempts) for x in letters] == [
            (DeadLetterReason.DELIVERY_LIMIT, Order(1), 5)
        ]
        assert t.broker_stats(Order).redelivered == 2
        dead = await client.xrange(f"{prefix}:dead:test.orders")
        assert dead[0][1][b"reason"] == b"delivery_limit"
        assert (await client.xpending(stream, "svc"))["pending"] == 0
    finally:
        await client.aclose()


async def test_per_key_order_holds_across_processes(url: str, prefix: str) -> None:
    seen: list[tuple[int, str, int]] = []
    options: dict[str, Any] = {"partitions": 4, "claim_idle": 1.0}
    publisher = bus_on(transport(url, prefix, **options))
    publisher.configure(Order, key=lambda o: o.account)
    consumers = []
    for index in range(2):
        consumer = bus_on(transport(url, prefix, **options), concurrency=4)
        consumer.configure(Order, key=lambda o: o.account)

        async def handle(order: Order, index: int = index) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append((index, order.account, order.n))

        consumer.subscribe(Order, handle)
        consumers.append(consumer)
    accounts = [f"acct-{i}" for i in range(8)]
    with anyio.fail_after(LIMIT):
        async with consumers[0], consumers[1], publisher:
            for n in range(160):
                await publisher.publish(Order(n, account=accounts[n % 8]))
            await until(lambda: len(seen) >= 160)
    for account in accounts:  # also across a lease handed over while running
        mine = [n for _, a, n in seen if a == account]
        assert mine == sorted(mine)  # in publish order
    assert sorted(n for _, _, n in seen) == list(range(160))


async def test_stats_report_the_backlog_and_the_consumer(url: str, prefix: str) -> None:
    t = transport(url, prefix)
    bus = bus_on(t)
    gate = anyio.Event()

    @bus.on(Order)
    async def handle(order: Order) -> None:
        await gate.wait()

    with anyio.fail_after(LIMIT):
        async with bus:
            for n in range(5):
                await bus.publish(Order(n))
            await until(lambda: bus.stats(Order).broker is not None)
            await until(lambda: (bus.stats(Order).broker or t.broker_stats(Order)).pending == 5)
            gate.set()
            await until(lambda: t.broker_stats(Order).acked == 5)
    assert t.consumer in repr(t)


async def test_publishes_of_one_tick_go_out_together_and_each_returns_after_redis(
    url: str, prefix: str
) -> None:
    t = transport(url, prefix)
    bus = bus_on(t)
    client = raw_client(url)
    try:
        async with bus:
            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(bus.publish, Order(n))
            # every publish returned: every entry is on Redis already
            assert await client.xlen(f"{prefix}:test.orders") == 100
    finally:
        await client.aclose()


async def test_credentials_stay_out_of_reprs_and_errors(prefix: str) -> None:
    t = RedisTransport("redis://alice:s3cret@127.0.0.1:1/0", group="svc", prefix=prefix)
    assert "s3cret" not in repr(t)
    assert "alice" not in repr(t)
    with pytest.raises(ConnectionError) as caught:
        async with bus_on(t):
            pass
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


async def test_opentelemetry_trace_context_reaches_the_handler(url: str, prefix: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    t = transport(url, prefix)
    bus = bus_on(t)
    parents: list[int] = []

    @bus.on(Order)
    async def handle(order: Order) -> None:
        parents.append(trace.get_current_span().get_span_context().trace_id)

    with anyio.fail_after(LIMIT):
        async with bus:
            with tracer.start_as_current_span("publish") as span:
                await bus.publish(Order(1))
                trace_id = span.get_span_context().trace_id
            await until(lambda: len(parents) == 1)
    assert parents == [trace_id]


async def test_dedup_drops_a_resend_of_the_same_event_id(url: str, prefix: str) -> None:
    from eventcore.transports.redis.publish import Batch, Item

    t = transport(url, prefix, dedup=60.0)
    bus = bus_on(t)
    async with bus:
        await bus.publish(Order(1))
        client = raw_client(url)
        try:
            stream = f"{prefix}:test.orders"
            [(_, fields)] = await client.xrange(stream)
            data = fields[b"m"]
            event_id = data.split(b'"id":"')[1].split(b'"')[0].decode()
            item = Item(Order, event_id, stream, f"{prefix}:dedup:{event_id}", data, None)
            resend = Batch(items=[item])
            assert t._publisher is not None
            await t._publisher._publish(resend)  # what a retry after a lost connection does
            assert resend.results == [1]
            assert await client.xlen(stream) == 1
        finally:
            await client.aclose()


async def test_bad_settings_are_refused_at_once() -> None:
    for bad in (
        {"partitions": 0},
        {"max_deliver": 0},
        {"claim_idle": 0},
        {"max_len": 0},
        {"dedup": -1},
        {"group": ""},
        {"format": "xml"},
    ):
        options: dict[str, Any] = {"group": "svc", **bad}
        with pytest.raises(InvalidConfiguration):
            RedisTransport(**options)


def test_on_trio_the_transport_refuses_clearly(url: str, prefix: str) -> None:
    bus = bus_on(transport(url, prefix))

    async def main() -> None:
        async with bus:
            pytest.fail("the dispatcher must not start")

    with pytest.raises(InvalidConfiguration, match="asyncio"):
        anyio.run(main, backend="trio")


def test_the_logger_never_sees_a_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    t = RedisTransport("rediss://bob:hunter2@127.0.0.1:1/0", group="svc")
    logging.getLogger("eventcore.redis").info("%r", t)
    assert "hunter2" not in caplog.text


async def test_idle_consumers_are_forgotten_only_when_they_hold_nothing(
    url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eventcore.transports.redis.settle as module

    monkeypatch.setattr(module, "_FORGET_IDLE", 0.0)
    t = transport(url, prefix, claim_idle=0.001)
    bus = bus_on(t)
    stream = f"{prefix}:test.orders"
    client = raw_client(url)
    try:
        async with bus:  # publishes two, one for each ghost to hold
            await bus.publish(Order(1))
            await bus.publish(Order(2))
            await client.xgroup_create(stream, "svc", id="0")
            [(_, [(first, _)])] = await client.xreadgroup("svc", "gone", {stream: ">"}, count=1)
            await client.xack(stream, "svc", first)
            await client.xreadgroup("svc", "holding", {stream: ">"}, count=1)
            await anyio.sleep(0.05)  # both idle longer than 10 x claim_idle (10 ms)
            from eventcore.transports.redis.settle import forget_consumers

            assert t._session is not None
            await forget_consumers(t._session, stream)
            names = {c["name"] for c in await client.xinfo_consumers(stream, "svc")}
    finally:
        await client.aclose()
    assert names == {b"holding"}  # its pending entry is not lost with it


async def test_one_transport_serves_one_dispatcher(url: str, prefix: str) -> None:
    t = transport(url, prefix)
    async with bus_on(t):
        with pytest.raises(InvalidConfiguration, match="a transport of its own"):
            async with bus_on(t):
                pass


def test_without_redis_py_the_import_says_what_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import eventcore, eventcore.transports\n"
        "try:\n"
        "    import eventcore.transports.redis\n"
        "except ImportError as exc:\n"
        "    print(exc.name, '|', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    name, _, message = done.stdout.strip().partition(" | ")
    assert name == "redis"
    assert 'pip install "eventcore-py[redis]"' in message


async def test_a_slow_handler_keeps_its_entries_from_being_claimed(url: str, prefix: str) -> None:
    seen: list[tuple[int, int]] = []
    consumers = [bus_on(transport(url, prefix, claim_idle=0.3), concurrency=2) for _ in range(2)]
    for index, consumer in enumerate(consumers):

        async def handle(order: Order, index: int = index) -> None:
            seen.append((index, order.n))
            await anyio.sleep(1.2)  # four claim_idle periods: kept alive meanwhile

        consumer.subscribe(Order, handle)
    publisher = bus_on(transport(url, prefix))
    with anyio.fail_after(LIMIT):
        async with consumers[0], consumers[1], publisher:
            for n in range(4):
                await publisher.publish(Order(n))
            await until(lambda: len(seen) >= 4)
            await consumers[0].drain()
            await consumers[1].drain()
    assert sorted(n for _, n in seen) == [0, 1, 2, 3]  # none handled twice
