"""``python -m bench.redis_transport [--quick]``: the Redis Streams transport beside raw
redis-py doing the same work and FastStream's Redis stream subscriber, in one run.

Against the Redis at ``EVENTCORE_REDIS_URL`` (default 127.0.0.1:6379), under a key
prefix of its own, deleted afterwards. Three measurements, each contender in turn
within a round, the median of the rounds:

* **publish, 64 concurrent publishers**: events/s until every publish returned
  (Redis acknowledged it). Raw: one task, XADD in pipelines of 256. eventcore:
  64 tasks ``await bus.publish(...)`` (the publishes of one tick go out as one
  pipeline). FastStream: 64 tasks ``await broker.publish(..., stream=...)``.
* **end to end**: the same publishes while one consumer in the same process
  handles them; events/s until the last one was handled. Raw: XREADGROUP COUNT
  256 and one XACK per batch. FastStream: a ``StreamSub`` with a group, started
  before publishing (it creates its group at the stream's end).
* **latency at 2,000 ev/s**: publish-to-handler time, p50 and p99, one publisher
  paced at 2 k/s. Raw: XADD per event, XREADGROUP BLOCK in a loop.

Writes ``bench/out/redis.json``. The machine is small (2 cores) and shared: the
runs are short on purpose; compare the ratios, which are taken within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from eventcore import Dispatcher
from eventcore.transports.redis import RedisTransport
from eventcore.wire import event

HERE = Path(__file__).resolve().parent
URL = os.environ.get("EVENTCORE_REDIS_URL", "redis://127.0.0.1:6379/0")
PUBLISHERS = 64


@event("bench.tick", version=1)
@dataclass(frozen=True)
class Tick:
    """The benchmark's event: a number and the time it was published."""

    n: int
    sent: float = 0.0


def payload(n: int, sent: float = 0.0) -> bytes:
    """What the raw contenders write: about the size of eventcore's envelope."""
    body = {"type": "bench.tick", "n": n, "sent": sent, "id": uuid.uuid4().hex}
    return json.dumps(body).encode()


async def cleanup(prefix: str) -> None:
    client: Any = aioredis.Redis.from_url(URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- raw redis-py -------------------------------------------------------------------------


async def raw_publish(prefix: str, events: int) -> float:
    client: Any = aioredis.Redis.from_url(URL)
    stream = f"{prefix}:raw"
    try:
        start = time.perf_counter()
        for first in range(0, events, 256):
            pipe = client.pipeline(transaction=False)
            for n in range(first, min(first + 256, events)):
                pipe.xadd(stream, {b"m": payload(n)})
            await pipe.execute()
        return events / (time.perf_counter() - start)
    finally:
        await client.aclose()


async def raw_end_to_end(prefix: str, events: int) -> float:
    client: Any = aioredis.Redis.from_url(URL)
    stream = f"{prefix}:raw-e2e"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    seen = 0

    async def consume() -> None:
        nonlocal seen
        while seen < events:
            reply = await client.xreadgroup("g", "c", {stream: ">"}, count=256, block=1000)
            for _, entries in reply or []:
                ids = [entry for entry, _ in entries]
                for _, fields in entries:
                    json.loads(fields[b"m"])
                seen += len(ids)
                await client.xack(stream, "g", *ids)

    try:
        start = time.perf_counter()
        consumer = asyncio.ensure_future(consume())
        await raw_publish_to(client, stream, events)
        await consumer
        return events / (time.perf_counter() - start)
    finally:
        await client.aclose()


async def raw_publish_to(client: Any, stream: str, events: int) -> None:
    for first in range(0, events, 256):
        pipe = client.pipeline(transaction=False)
        for n in range(first, min(first + 256, events)):
            pipe.xadd(stream, {b"m": payload(n)})
        await pipe.execute()


async def raw_latency(prefix: str, seconds: float, rate: int) -> list[float]:
    client: Any = aioredis.Redis.from_url(URL)
    reader: Any = aioredis.Redis.from_url(URL)
    stream = f"{prefix}:raw-lat"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    total = int(seconds * rate)
    latencies: list[float] = []

    async def consume() -> None:
        while len(latencies) < total:
            reply = await reader.xreadgroup("g", "c", {stream: ">"}, count=256, block=1000)
            for _, entries in reply or []:
                now = time.perf_counter()
                for _, fields in entries:
                    latencies.append(now - json.loads(fields[b"m"])["sent"])
                await reader.xack(stream, "g", *[entry for entry, _ in entries])

    try:
        consumer = asyncio.ensure_future(consume())
        await paced(
            total, rate, lambda n: client.xadd(stream, {b"m": payload(n, time.perf_counter())})
        )
        await consumer
        return latencies
    finally:
        await client.aclose()
        await reader.aclose()


async def paced(total: int, rate: int, send: Callable[[int], Awaitable[Any]]) -> None:
    """Call *send(n)* *total* times at *rate* per second (catching up when late)."""
    start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(n)


# -- eventcore ----------------------------------------------------------------------------


def eventcore_bus(prefix: str, **options: Any) -> tuple[Dispatcher, RedisTransport]:
    transport = RedisTransport(URL, group="bench", prefix=prefix, max_len=None)
    bus = Dispatcher(transport=transport, **options)
    bus.register(Tick)
    return bus, transport


async def concurrently(events: int, publish: Callable[[int], Awaitable[Any]]) -> None:
    async def publisher(first: int) -> None:
        for n in range(first, events, PUBLISHERS):
            await publish(n)

    await asyncio.gather(*(publisher(first) for first in range(PUBLISHERS)))


async def eventcore_publish(prefix: str, events: int) -> float:
    bus, _ = eventcore_bus(prefix)
    async with bus:
        start = time.perf_counter()
        await concurrently(events, lambda n: bus.publish(Tick(n)))
        return events / (time.perf_counter() - start)


async def eventcore_end_to_end(prefix: str, events: int) -> float:
    bus, _ = eventcore_bus(prefix, queue_size=1024, concurrency=16)
    seen = 0
    done = asyncio.Event()

    @bus.on(Tick)
    async def handle(tick: Tick) -> None:
        nonlocal seen
        seen += 1
        if seen >= events:
            done.set()

    async with bus:
        start = time.perf_counter()
        await concurrently(events, lambda n: bus.publish(Tick(n)))
        await done.wait()
        return events / (time.perf_counter() - start)


async def eventcore_latency(prefix: str, seconds: float, rate: int) -> list[float]:
    bus, _ = eventcore_bus(prefix, queue_size=1024, concurrency=16)
    total = int(seconds * rate)
    latencies: list[float] = []
    done = asyncio.Event()

    @bus.on(Tick)
    async def handle(tick: Tick) -> None:
        latencies.append(time.perf_counter() - tick.sent)
        if len(latencies) >= total:
            done.set()

    async with bus:
        await paced(total, rate, lambda n: bus.publish(Tick(n, time.perf_counter())))
        await done.wait()
    return latencies


# -- FastStream ---------------------------------------------------------------------------


def faststream_redis() -> Any:
    """``faststream.redis`` (a bench-only dependency, untyped here)."""
    import importlib

    return importlib.import_module("faststream.redis")


async def faststream_publish(prefix: str, events: int) -> float:
    broker = faststream_redis().RedisBroker(URL, logger=None)  # no line per message
    await broker.connect()
    try:
        stream = f"{prefix}:fs"
        start = time.perf_counter()
        await concurrently(events, lambda n: broker.publish({"n": n}, stream=stream))
        return events / (time.perf_counter() - start)
    finally:
        await broker.stop()


async def faststream_end_to_end(prefix: str, events: int) -> float:
    fs = faststream_redis()
    broker = fs.RedisBroker(URL, logger=None)  # no line per message: a fair race
    stream = f"{prefix}:fs-e2e"
    seen = 0
    done = asyncio.Event()

    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen >= events:
            done.set()

    broker.subscriber(stream=fs.StreamSub(stream, group="g", consumer="c"))(handle)
    await broker.start()  # before publishing: its group starts at the stream's end
    try:
        start = time.perf_counter()
        await concurrently(events, lambda n: broker.publish({"n": n}, stream=stream))
        await asyncio.wait_for(done.wait(), 300)
        return events / (time.perf_counter() - start)
    finally:
        await broker.stop()


# -- the run ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    rates: dict[str, list[float]] = {}
    fs_events = max(1000, args.events // 5)  # the slow peer gets fewer events
    try:
        for round_ in range(args.rounds):
            for name, run, events in (
                ("publish/raw", raw_publish, args.events),
                ("publish/eventcore", eventcore_publish, args.events),
                ("publish/faststream", faststream_publish, fs_events),
                ("e2e/raw", raw_end_to_end, args.events),
                ("e2e/eventcore", eventcore_end_to_end, args.events),
                ("e2e/faststream", faststream_end_to_end, fs_events),
            ):
                rate = await run(f"{prefix}:{round_}:{name}", events)
                rates.setdefault(name, []).append(rate)
                print(f"round {round_ + 1}: {name:<20} {rate:>10,.0f} ev/s", flush=True)
                await cleanup(prefix)
        raw_lat = await raw_latency(f"{prefix}:lat", args.seconds, 2000)
        await cleanup(prefix)
        ec_lat = await eventcore_latency(f"{prefix}:lat-ec", args.seconds, 2000)
    finally:
        await cleanup(prefix)
    median = {name: statistics.median(values) for name, values in rates.items()}
    latency = {
        name: {"p50_ms": percentile(values, 0.5) * 1e3, "p99_ms": percentile(values, 0.99) * 1e3}
        for name, values in (("raw", raw_lat), ("eventcore", ec_lat))
    }
    return {
        "events": args.events,
        "faststream_events": fs_events,
        "rounds": args.rounds,
        "publishers": PUBLISHERS,
        "rates": rates,
        "median_ev_per_s": median,
        "ratios": {
            "publish: eventcore / raw pipelined": median["publish/eventcore"]
            / median["publish/raw"],
            "publish: eventcore / faststream": median["publish/eventcore"]
            / median["publish/faststream"],
            "e2e: eventcore / raw": median["e2e/eventcore"] / median["e2e/raw"],
            "e2e: eventcore / faststream": median["e2e/eventcore"] / median["e2e/faststream"],
        },
        "latency_2k_per_s": latency,
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    args = parser.parse_args()
    rounds = args.rounds
    args.events, args.rounds, args.seconds = (5000, 1, 1.0) if args.quick else (20000, 3, 3.0)
    args.rounds = rounds or args.rounds
    started = time.perf_counter()
    result = asyncio.run(measure(args))
    result["seconds"] = time.perf_counter() - started
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "redis.json").write_text(json.dumps(result, indent=2))
    print()
    for name, ratio in result["ratios"].items():
        print(f"{name:<40} {ratio:6.2f}x")
    for name, figures in result["latency_2k_per_s"].items():
        p50, p99 = figures["p50_ms"], figures["p99_ms"]
        print(f"latency at 2k/s, {name:<10} p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"({result['seconds']:.0f} s; bench/out/redis.json)")


if __name__ == "__main__":
    main()
