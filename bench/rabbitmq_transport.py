"""``python -m bench.rabbitmq_transport [--quick] [--profile]``: the RabbitMQ transport
in the shape of a service (one process publishes and consumes) beside raw aio-pika
doing the same work and FastStream's ``RabbitBroker``, in one run.

Against a private RabbitMQ node started for the run on free ports in a temporary
directory (as the fault tests do; removed afterwards), or the node at
``EVENTCORE_RABBITMQ_URL`` when set, on queues of the run's own. Every
contender uses a durable quorum queue, persistent messages (~100 bytes), publisher
confirms, and one consumer in the same process that decodes each message and acks
it; the clock stops when the last message was handled and acked. Two shapes:

* **sequential**: one task ``await``s each publish (returns once RabbitMQ
  confirmed it) while the consumer runs;
* **64 concurrent publishers**: 64 tasks share the events, many publishes in
  flight on one channel.

Raw aio-pika: ``exchange.publish(Message(..., message_id=...), routing_key,
mandatory=True)`` on a channel with publisher confirms; ``queue.consume`` with a
prefetch of 1025 and ``message.ack()`` per message; its quorum queue has the
arguments of eventcore's (``x-delivery-limit``, ``x-dead-letter-exchange``), which
cost RabbitMQ some speed. eventcore: ``bus.publish``
(queue size 1024, concurrency 1: a prefetch of 1025). FastStream:
``broker.publish(..., queue=...)`` and a ``@broker.subscriber`` on the quorum queue.

Contenders run in turn within each round; the median of the rounds is reported,
and the ratios are taken within this one run. With ``--profile``, a cProfile of one
more eventcore run per shape goes to ``bench/out/rabbitmq-profile-<shape>.txt``.
Writes ``bench/out/rabbitmq.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import io
import json
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika

from eventcore import Dispatcher
from eventcore.transports.rabbitmq import RabbitMQTransport
from eventcore.wire import event

HERE = Path(__file__).resolve().parent
#: the node's URL: EVENTCORE_RABBITMQ_URL, or a private node's (set in main)
URL = os.environ.get("EVENTCORE_RABBITMQ_URL", "")
CONCURRENT = 64
PREFETCH = 1024 + 1
#: the raw contenders' queue: a quorum queue with what eventcore's queues carry for
#: poison messages (a delivery limit, a dead-letter exchange)
QUORUM = {"x-queue-type": "quorum", "x-delivery-limit": 5, "x-dead-letter-exchange": "bench.dead"}

Run = Callable[[str, int, int], Awaitable[float]]


@event("bench.rabbit.tick", version=1)
@dataclass(frozen=True)
class Tick:
    """The benchmark's event (its envelope is about 100 bytes)."""

    n: int
    note: str = "a bench event"


def body_of(n: int) -> bytes:
    """What the raw contender sends: about the size of eventcore's envelope."""
    return json.dumps({"type": "bench.rabbit.tick", "id": uuid.uuid4().hex, "n": n}).encode()


async def spread(events: int, publishers: int, send: Callable[[int], Awaitable[Any]]) -> None:
    """Publish events 0..events-1: one task in order, or *publishers* tasks sharing them."""
    if publishers == 1:
        for n in range(events):
            await send(n)
        return

    async def share(first: int) -> None:
        for n in range(first, events, publishers):
            await send(n)

    await asyncio.gather(*(share(first) for first in range(publishers)))


# -- raw aio-pika -------------------------------------------------------------------------


async def raw(queue_name: str, events: int, publishers: int) -> float:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(queue_name, durable=True, arguments=QUORUM)
        done = asyncio.Event()
        handled = 0

        async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal handled
            json.loads(message.body)
            await message.ack()
            handled += 1
            if handled == events:
                done.set()

        async def send(n: int) -> None:
            message = aio_pika.Message(
                body_of(n),
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, queue_name, mandatory=True)

        tag = await queue.consume(consume)
        start = time.perf_counter()
        await spread(events, publishers, send)
        await done.wait()
        elapsed = time.perf_counter() - start
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return events / elapsed
    finally:
        await connection.close()


# -- eventcore ----------------------------------------------------------------------------


async def eventcore(prefix: str, events: int, publishers: int) -> float:
    transport = RabbitMQTransport(URL, group="bench", prefix=prefix)
    bus = Dispatcher(transport=transport, queue_size=1024)
    done = asyncio.Event()
    handled = 0

    @bus.on(Tick)
    async def handle(tick: Tick) -> None:
        nonlocal handled
        handled += 1
        if handled == events:
            done.set()

    try:
        async with bus:
            start = time.perf_counter()
            await spread(events, publishers, lambda n: bus.publish(Tick(n)))
            await done.wait()
            while transport.broker_stats(Tick).acked < events:  # noqa: ASYNC110
                await asyncio.sleep(0)
            elapsed = time.perf_counter() - start
        return events / elapsed
    finally:
        await delete(transport.declared(), [prefix, f"{prefix}.dead"])


async def delete(queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# -- FastStream ---------------------------------------------------------------------------


async def faststream(queue_name: str, events: int, publishers: int) -> float:
    rabbit = importlib.import_module("faststream.rabbit")  # a bench-only dependency
    broker = rabbit.RabbitBroker(URL, logger=None)
    queue = rabbit.RabbitQueue(
        queue_name,
        durable=True,
        queue_type=rabbit.QueueType.QUORUM,
        arguments={k: v for k, v in QUORUM.items() if k != "x-queue-type"},
    )
    done = asyncio.Event()
    handled = 0

    @broker.subscriber(queue)  # type: ignore[untyped-decorator]
    async def handle(body: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1
        if handled == events:
            done.set()

    async def send(n: int) -> None:
        await broker.publish({"type": "bench.rabbit.tick", "n": n}, queue=queue, persist=True)

    await broker.start()
    try:
        start = time.perf_counter()
        await spread(events, publishers, send)
        await done.wait()
        return events / (time.perf_counter() - start)
    finally:
        await broker.stop()
        await delete([queue_name], [])


# -- the run ------------------------------------------------------------------------------

CONTENDERS: dict[str, Run] = {
    "raw aio-pika": raw,
    "eventcore": eventcore,
    "FastStream": faststream,
}
SHAPES = {"sequential": 1, f"{CONCURRENT} concurrent publishers": CONCURRENT}


async def profile(shape: str, events: int, publishers: int) -> str:
    """A cProfile of one eventcore run of *shape*: the report's file name."""
    profiler = cProfile.Profile()
    profiler.enable()
    await eventcore(f"benchp{uuid.uuid4().hex[:8]}", events, publishers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    path = HERE / "out" / f"rabbitmq-profile-{shape.split()[0]}.txt"
    path.write_text(out.getvalue())
    return path.name


async def measure(events: int, rounds: int, with_profile: bool) -> dict[str, Any]:
    rates: dict[str, dict[str, list[float]]] = {s: {c: [] for c in CONTENDERS} for s in SHAPES}
    for round_ in range(rounds):
        for shape, publishers in SHAPES.items():
            for name, contender in CONTENDERS.items():
                rate = await contender(f"bench{uuid.uuid4().hex[:10]}", events, publishers)
                rates[shape][name].append(rate)
                print(f"round {round_ + 1} {shape:28} {name:14} {rate:9,.0f}/s", flush=True)
    table = {
        shape: {name: statistics.median(values) for name, values in by.items()}
        for shape, by in rates.items()
    }
    ratios = {
        shape: {
            "eventcore / raw": row["eventcore"] / row["raw aio-pika"],
            "eventcore / FastStream": row["eventcore"] / row["FastStream"],
        }
        for shape, row in table.items()
    }
    profiles = {}
    if with_profile:
        for shape, publishers in SHAPES.items():
            profiles[shape] = await profile(shape, events, publishers)
    return {
        "events": events,
        "rounds": rounds,
        "load": {"start": os.getloadavg()},
        "rates": rates,
        "median": table,
        "ratios": ratios,
        "profiles": profiles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rabbitmq_transport")
    parser.add_argument("--quick", action="store_true", help="2,000 events, 1 round")
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile eventcore's runs")
    args = parser.parse_args()
    events, rounds = (2_000, 1) if args.quick else (args.events, args.rounds)
    (HERE / "out").mkdir(exist_ok=True)
    global URL
    node = None
    if not URL:
        from tests.brokers.rabbit_support import PrivateRabbit

        node = PrivateRabbit()
        node.start()
        URL = node.url
    try:
        load_start = os.getloadavg()
        result = asyncio.run(measure(events, rounds, args.profile))
        result["load"] = {"start": load_start, "end": os.getloadavg()}
        result["node"] = "private" if node is not None else "EVENTCORE_RABBITMQ_URL"
    finally:
        if node is not None:
            node.stop()
    (HERE / "out" / "rabbitmq.json").write_text(json.dumps(result, indent=2))
    print(f"\n{events:,} events, {rounds} round(s), load {load_start} -> {os.getloadavg()}")
    for shape, row in result["median"].items():
        cells = "  ".join(f"{name} {rate:,.0f}/s" for name, rate in row.items())
        ratio = result["ratios"][shape]
        print(
            f"{shape}: {cells}  eventcore/raw {ratio['eventcore / raw']:.2f}x  "
            f"eventcore/FastStream {ratio['eventcore / FastStream']:.2f}x"
        )


if __name__ == "__main__":
    main()
