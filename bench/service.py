"""``python -m bench.service nats|redis [--quick] [--rounds N] [--profile]``: the
shape of a service (issue 20): one process publishes and consumes the same type,
~100-byte events, 20,000 of them; the clock stops when the server holds nothing
unacknowledged (every event handled and its ack on the server). Contenders
interleaved in one run, each round starting with another one:

* ``sequential``: one publisher awaiting each publish, the consumer in the same
  process (raw: ``await js.publish`` / ``await XADD``; eventcore:
  ``await bus.publish``; FastStream: ``await broker.publish``);
* ``concurrent64``: 64 publisher tasks (raw NATS: 64 tasks of ``js.publish``; raw
  Redis: XADD in pipelines of 64, what 64 publishers of one tick amount to);
* ``keyed5``: eventcore, 64 publishers, a type with a key (5 keys, the default
  ``partitions``) beside the same type unkeyed.

Raw consumers: NATS ``fetch(256)`` on a durable pull consumer, one ack per
message; Redis ``XREADGROUP COUNT 256 BLOCK`` and one ``XACK`` per batch.
``run()`` is called by ``bench.nats_transport`` and ``bench.redis_transport``;
``--profile`` writes a cProfile of eventcore's run of each shape to
``bench/out/service-BROKER-SHAPE.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import io
import json
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventcore import Dispatcher
from eventcore.wire import event

HERE = Path(__file__).resolve().parent
NATS_URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("EVENTCORE_REDIS_URL", "redis://127.0.0.1:6379/0")
EVENTS = 20_000
TASKS = 64
KEYS = 5
GROUP = "svc"

#: (shape, baseline, target of eventcore over it), per broker (the issue's table)
TARGETS = {
    "nats": (("sequential", "raw", 1.0), ("concurrent64", "raw", 1.0)),
    "redis": (("sequential", "raw", 1.0), ("concurrent64", "raw", 0.9)),
}
KEYED_TARGET = 0.5


@event("bench.service.order")
@dataclass(frozen=True)
class Order:
    order_id: str
    total: float
    currency: str
    sku: str
    quantity: int
    sent: float


def order(i: int) -> Order:
    """Event *i* (a negative *i*: a warm-up event, which the sink skips)."""
    return Order(f"A-{i:08d}", 99.5, "EUR", f"SKU-{i % 100_000:05d}", 3, float(i))


def raw_bytes(i: int) -> bytes:
    body = {"order_id": f"A-{i:08d}", "total": 99.5, "currency": "EUR"}
    body |= {"sku": f"SKU-{i % 100_000:05d}", "quantity": 3, "sent": float(i)}
    return json.dumps(body, separators=(",", ":")).encode()


def key_of(event: Order) -> int:
    return int(event.order_id[-1]) % KEYS


class Sink:
    """Counts the run's handled events; set when all came."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done = asyncio.Event()

    def __call__(self, sent: float) -> None:
        if sent < 0:
            return
        self.count += 1
        if self.count >= self.n:
            self.done.set()


class Contender:
    """One way to publish and consume: opened per run, its stream fresh."""

    name = ""

    async def open(self, sink: Sink) -> None:
        raise NotImplementedError

    async def publish(self, i: int) -> None:
        raise NotImplementedError

    async def publish_many(self, n: int, tasks: int) -> None:
        """*n* events from *tasks* concurrent publishers."""
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                await self.publish(i)

        await asyncio.gather(*(worker() for _ in range(tasks)))

    async def unacked(self) -> int:
        """What the server holds that is not acknowledged (not delivered, or in flight)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# -- NATS ----------------------------------------------------------------------------------


class NatsBase(Contender):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nc: Any = None
        self.js: Any = None
        self.stream = ""

    async def connect(self) -> None:
        import nats

        self.nc = await nats.connect(NATS_URL)
        self.js = self.nc.jetstream(timeout=10.0)

    async def fresh_stream(self, subject: str) -> None:
        import nats.js.errors
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_stream(self.stream)
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[subject],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )

    async def unacked(self) -> int:
        total = 0
        for info in await self.js.consumers_info(self.stream):
            total += info.num_pending + info.num_ack_pending
        return total

    async def close(self) -> None:
        import nats.js.errors

        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_stream(self.stream)
        await self.nc.close()


class RawNats(NatsBase):
    name = "raw"

    async def open(self, sink: Sink) -> None:
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig

        await self.connect()
        self.stream, self.subject = f"{self.prefix}_raw", f"{self.prefix}.raw.0"
        await self.fresh_stream(self.subject)
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(durable_name=GROUP, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0),
        )
        sub = await self.js.pull_subscribe_bind(GROUP, self.stream)

        async def consume() -> None:
            while True:
                try:
                    msgs = await sub.fetch(256, timeout=1.0)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue
                for msg in msgs:
                    sink(json.loads(msg.data)["sent"])
                    await msg.ack()

        self._pump = asyncio.get_running_loop().create_task(consume())

    async def publish(self, i: int) -> None:
        await self.js.publish(self.subject, raw_bytes(i))

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await super().close()


class EventcoreNats(NatsBase):
    def __init__(self, prefix: str, keyed: bool = False) -> None:
        super().__init__(prefix)
        self.keyed = keyed
        self.name = "eventcore keyed" if keyed else "eventcore"
        self.bus: Dispatcher | None = None

    async def open(self, sink: Sink) -> None:
        from eventcore.transports.nats import NatsTransport

        await self.connect()
        transport = NatsTransport(NATS_URL, group=GROUP, prefix=self.prefix)
        self.stream = transport.stream_of(Order)
        bus = self.bus = Dispatcher(transport=transport)
        if self.keyed:
            bus.configure(Order, key=key_of)

        async def handle(event: Order) -> None:
            sink(event.sent)

        bus.subscribe(Order, handle)
        await bus.__aenter__()
        await bus.publish(order(-1))  # the stream is set up on first use: not timed

    async def publish(self, i: int) -> None:
        assert self.bus is not None
        await self.bus.publish(order(i))

    async def close(self) -> None:
        assert self.bus is not None
        await self.bus.__aexit__(None, None, None)
        await super().close()


class FastStreamNats(NatsBase):
    name = "FastStream"

    async def open(self, sink: Sink) -> None:
        fs: Any = importlib.import_module("faststream.nats")
        from nats.js.api import RetentionPolicy

        await self.connect()
        self.stream, self.subject = f"{self.prefix}_fs", f"{self.prefix}.fs.0"
        await self.fresh_stream(self.subject)
        broker = self.broker = fs.NatsBroker(NATS_URL, logger=None)
        stream = fs.JStream(
            self.stream,
            subjects=[self.subject],
            retention=RetentionPolicy.WORK_QUEUE,
            declare=False,
        )

        async def handle(body: dict[str, Any]) -> None:
            sink(body["sent"])

        broker.subscriber(
            self.subject,
            stream=stream,
            durable=GROUP,
            pull_sub=fs.PullSub(batch_size=256, timeout=1.0),
        )(handle)
        await broker.start()

    async def publish(self, i: int) -> None:
        body = json.loads(raw_bytes(i))
        await self.broker.publish(body, self.subject, stream=self.stream, timeout=10.0)

    async def close(self) -> None:
        await self.broker.stop()
        await super().close()


# -- Redis ---------------------------------------------------------------------------------


class RedisBase(Contender):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.client: Any = None
        self.streams: list[str] = []

    async def connect(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(REDIS_URL)

    async def unacked(self) -> int:
        total = 0
        for stream in self.streams:
            for info in await self.client.xinfo_groups(stream):
                total += int(info.get("pending") or 0) + int(info.get("lag") or 0)
        return total

    async def close(self) -> None:
        keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}:*")]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()


class RawRedis(RedisBase):
    name = "raw"

    async def open(self, sink: Sink) -> None:
        await self.connect()
        self.stream = f"{self.prefix}:raw"
        self.streams = [self.stream]
        await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        client, stream = self.client, self.stream

        self._stop = False

        async def consume() -> None:  # redis-py cannot cancel a blocked read: a flag
            while not self._stop:
                reply = await client.xreadgroup(GROUP, "c", {stream: ">"}, count=256, block=100)
                for _, entries in reply or ():
                    for _, fields in entries:
                        sink(json.loads(fields[b"m"])["sent"])
                    await client.xack(stream, GROUP, *(entry for entry, _ in entries))

        self._pump = asyncio.get_running_loop().create_task(consume())

    async def publish(self, i: int) -> None:
        await self.client.xadd(self.stream, {"m": raw_bytes(i)})

    async def publish_many(self, n: int, tasks: int) -> None:
        for start in range(0, n, tasks):
            pipe = self.client.pipeline(transaction=False)
            for i in range(start, min(n, start + tasks)):
                pipe.xadd(self.stream, {"m": raw_bytes(i)})
            await pipe.execute()

    async def close(self) -> None:
        self._stop = True
        await self._pump
        await super().close()


class EventcoreRedis(RedisBase):
    def __init__(self, prefix: str, keyed: bool = False) -> None:
        super().__init__(prefix)
        self.keyed = keyed
        self.name = "eventcore keyed" if keyed else "eventcore"
        self.bus: Dispatcher | None = None

    async def open(self, sink: Sink) -> None:
        from eventcore.transports.redis import RedisTransport

        await self.connect()
        transport = RedisTransport(REDIS_URL, group=GROUP, prefix=self.prefix, max_len=None)
        self.streams = transport.streams_of(Order)
        bus = self.bus = Dispatcher(transport=transport)
        if self.keyed:
            bus.configure(Order, key=key_of)

        async def handle(event: Order) -> None:
            sink(event.sent)

        bus.subscribe(Order, handle)
        await bus.__aenter__()
        await bus.publish(order(-1))

    async def publish(self, i: int) -> None:
        assert self.bus is not None
        await self.bus.publish(order(i))

    async def unacked(self) -> int:
        existing = [s for s in self.streams if await self.client.exists(s)]
        self.streams = existing
        return await super().unacked()

    async def close(self) -> None:
        assert self.bus is not None
        await self.bus.__aexit__(None, None, None)
        await super().close()


class FastStreamRedis(RedisBase):
    name = "FastStream"

    async def open(self, sink: Sink) -> None:
        fs: Any = importlib.import_module("faststream.redis")
        await self.connect()
        self.stream = f"{self.prefix}:fs"
        self.streams = [self.stream]
        await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        broker = self.broker = fs.RedisBroker(REDIS_URL, logger=None)

        async def handle(body: dict[str, Any]) -> None:
            sink(body["sent"])

        broker.subscriber(stream=fs.StreamSub(self.stream, group=GROUP, consumer="c"))(handle)
        await broker.start()

    async def publish(self, i: int) -> None:
        await self.broker.publish(json.loads(raw_bytes(i)), stream=self.stream)

    async def close(self) -> None:
        await self.broker.stop()
        await super().close()


# -- the run -------------------------------------------------------------------------------


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def contenders(broker: str, shape: str, prefix: str) -> list[Contender]:
    nats = broker == "nats"
    if shape == "keyed5":
        keyed = EventcoreNats(prefix, keyed=True) if nats else EventcoreRedis(prefix, keyed=True)
        return [keyed, EventcoreNats(prefix) if nats else EventcoreRedis(prefix)]
    out: list[Contender] = [RawNats(prefix) if nats else RawRedis(prefix)]
    out.append(EventcoreNats(prefix) if nats else EventcoreRedis(prefix))
    if _available(f"faststream.{broker}"):
        out.append(FastStreamNats(prefix) if nats else FastStreamRedis(prefix))
    return out


#: set by ``--profile``: enabled only around the timed part
_profiler: cProfile.Profile | None = None


async def measure(c: Contender, n: int, tasks: int) -> dict[str, Any]:
    """Publish *n* events from *tasks* publishers while consuming them; the clock
    stops when the server holds nothing unacknowledged."""
    sink = Sink(n)
    await c.open(sink)
    try:
        if _profiler is not None:
            _profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        if tasks == 1:
            for i in range(n):
                await c.publish(i)
        else:
            await c.publish_many(n, tasks)
        published = time.perf_counter() - started
        await asyncio.wait_for(sink.done.wait(), 300.0)
        while await c.unacked():  # noqa: ASYNC110  (polling the server)
            await asyncio.sleep(0.002)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if _profiler is not None:
            _profiler.disable()
    finally:
        await c.close()
    return {
        "events": n,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "publish_per_s": n / published,
        "cpu_us": cpu / n * 1e6,
    }


SHAPES = (("sequential", 1), ("concurrent64", TASKS), ("keyed5", TASKS))


async def run(
    broker: str, n: int, rounds: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every shape, *rounds* interleaved rounds of its contenders."""
    records = []
    for shape, tasks in SHAPES:
        for r in range(rounds):
            prefix = f"bsvc{uuid.uuid4().hex[:8]}"
            order_ = contenders(broker, shape, prefix)
            for c in order_[r % len(order_) :] + order_[: r % len(order_)]:
                result = await measure(c, n, tasks)
                records.append({"shape": shape, "contender": c.name, "round": r, **result})
                log(
                    f"{broker} {shape:<13} {c.name:<16} round {r}: {result['per_s']:,.0f} "
                    f"events/s, {result['cpu_us']:.0f} us CPU/event"
                )
    return records


def summarize(broker: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per (shape, contender) and eventcore's ratios against the targets."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        cells.setdefault((rec["shape"], rec["contender"]), []).append(rec)
    medians = {
        f"{shape}/{name}": {
            "per_s": statistics.median(r["per_s"] for r in recs),
            "best_per_s": max(r["per_s"] for r in recs),
            "cpu_us": statistics.median(r["cpu_us"] for r in recs),
        }
        for (shape, name), recs in cells.items()
    }
    checks = []
    for shape, baseline, target in TARGETS[broker]:
        ours, theirs = medians.get(f"{shape}/eventcore"), medians.get(f"{shape}/{baseline}")
        if ours and theirs:
            ratio = ours["per_s"] / theirs["per_s"]
            checks.append({"shape": shape, "baseline": baseline, "ratio": ratio, "target": target})
    keyed, plain = medians.get("keyed5/eventcore keyed"), medians.get("keyed5/eventcore")
    if keyed and plain:
        ratio = keyed["per_s"] / plain["per_s"]
        checks.append(
            {
                "shape": "keyed5",
                "baseline": "eventcore unkeyed",
                "ratio": ratio,
                "target": KEYED_TARGET,
            }
        )
    return {"medians": medians, "checks": checks}


def table(broker: str, summary: dict[str, Any]) -> str:
    lines = [
        "| shape | contender | events/s median (best) | eventcore / it | client CPU µs/event |",
        "|---|---|---|---|---|",
    ]
    medians = summary["medians"]
    for key, cell in medians.items():
        shape, name = key.split("/", 1)
        ours = medians.get(f"{shape}/eventcore")
        ratio = (
            "" if ours is None or name == "eventcore" else f"{ours['per_s'] / cell['per_s']:.2f}x"
        )
        shown = f"**{name}**" if name == "eventcore" else name
        lines.append(
            f"| {shape} | {shown} | {cell['per_s']:,.0f} ({cell['best_per_s']:,.0f}) | {ratio} "
            f"| {cell['cpu_us']:.0f} |"
        )
    lines += ["", "| target | ratio (median) | target | met |", "|---|---|---|---|"]
    for check in summary["checks"]:
        met = "yes" if check["ratio"] >= check["target"] else "**no**"
        lines.append(
            f"| {broker} {check['shape']} vs {check['baseline']} | {check['ratio']:.2f}x "
            f"| >= {check['target']}x | {met} |"
        )
    return "\n".join(lines)


async def profile(broker: str, n: int) -> None:
    """cProfile of eventcore in each shape: ``bench/out/service-BROKER-SHAPE.txt``."""
    global _profiler
    (HERE / "out").mkdir(exist_ok=True)
    for shape, tasks in SHAPES[:2]:
        prefix = f"bsvcp{uuid.uuid4().hex[:8]}"
        c = EventcoreNats(prefix) if broker == "nats" else EventcoreRedis(prefix)
        _profiler = cProfile.Profile()
        try:
            result = await measure(c, n, tasks)
        finally:
            profiler, _profiler = _profiler, None
        text = io.StringIO()
        text.write(
            f"# {broker} {shape}, eventcore: {n:,} events, {result['per_s']:,.0f}/s profiled\n"
        )
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        (HERE / "out" / f"service-{broker}-{shape}.txt").write_text(text.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__)
    parser.add_argument("broker", choices=("nats", "redis"))
    parser.add_argument("--quick", action="store_true", help="5,000 events, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    n = 5_000 if args.quick else EVENTS
    rounds = 1 if args.quick else args.rounds
    started = time.time()

    def log(line: str) -> None:
        print(f"{time.time() - started:6.1f}s  {line}", flush=True)

    load_before = os.getloadavg()
    records = asyncio.run(run(args.broker, n, rounds, log))
    load_after = os.getloadavg()
    summary = summarize(args.broker, records)
    print()
    print(table(args.broker, summary))
    print(f"\nload average (1, 5, 15 min): before {load_before}, after {load_after}")
    (HERE / "out").mkdir(exist_ok=True)
    meta = {"events": n, "rounds": rounds, "load_before": load_before, "load_after": load_after}
    data = {"meta": meta, "summary": summary, "records": records}
    (HERE / "out" / f"service-{args.broker}.json").write_text(json.dumps(data, indent=1) + "\n")
    if args.profile:
        asyncio.run(profile(args.broker, n))


if __name__ == "__main__":
    main()
