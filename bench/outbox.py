"""``python -m bench.outbox [--quick] [--profile]``: the transactional outbox beside a
plain publish of the same events on NATS JetStream (issue 22, "Speed").

Needs PostgreSQL (``EVENTCORE_PG_DSN``, default ``postgresql://postgres@127.0.0.1:5432/test``)
and NATS with JetStream (``EVENTCORE_NATS_URL``, default ``nats://127.0.0.1:4222``);
tables and streams get unique names and are removed afterwards. One process.

* ``throughput``: N events to the broker. Direct: ``await bus.publish(ev)`` from 100
  tasks (the relay's default concurrency). Outbox: N rows committed first, then a
  relay started and timed until it sent (and deleted) them all. Ratio: relay / direct.
* ``latency``: paced single events, one transaction each, with a consumer (another
  dispatcher) in the same process: commit-to-handled (outbox: commit, NOTIFY, relay,
  NATS, consumer) beside publish-to-handled (direct), p50 / p99; and commit-to-handled
  on an in-memory route (the relay hands the event to this process's handlers).
* ``insert``: what a publish adds to the caller's transaction: transactions that
  insert an order, with and without ``outbox.publish`` (asyncpg, and SQLAlchemy's
  AsyncSession), microseconds per transaction.

Targets (the issue's): relay throughput >= 0.5x direct; commit-to-handled p50 under
5 ms on loopback. ``--profile`` writes cProfile reports of the relay's run
(``bench/out/outbox-profile-relay.txt``). Writes ``bench/out/outbox.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import nats
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from eventcore import Dispatcher
from eventcore.outbox import Outbox, Tables, schema_ddl
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

HERE = Path(__file__).resolve().parent
DSN = os.environ.get("EVENTCORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
TASKS = 100


@event("bench.outbox.order")
@dataclass(frozen=True)
class Order:
    order_id: str
    total: float
    customer: str = "c-42"


@asynccontextmanager
async def environment() -> AsyncIterator[tuple[Tables, str]]:
    """Unique tables (with an ``orders`` table of the bench's own) and NATS prefix."""
    tag = uuid.uuid4().hex[:10]
    tables = Tables(outbox=f"b{tag}_outbox", inbox=f"b{tag}_inbox", dead=f"b{tag}_dead")
    conn = await asyncpg.connect(DSN)
    await conn.execute(schema_ddl(tables) + f"CREATE TABLE b{tag}_orders (id text PRIMARY KEY);")
    try:
        yield tables, f"b{tag}"
    finally:
        await conn.execute(
            f"DROP TABLE IF EXISTS {tables.outbox}, {tables.inbox}, {tables.dead}, "
            f"b{tag}_orders CASCADE; DROP FUNCTION IF EXISTS {tables.outbox}_notify()"
        )
        await conn.close()
        nc = await nats.connect(URL)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(f"b{tag}_"):
                await js.delete_stream(info.config.name)
        await nc.close()


def transport(prefix: str) -> NatsTransport:
    return NatsTransport(URL, group="bench", prefix=prefix, fetch_wait=0.05)


def orders(n: int) -> list[Order]:
    return [Order(f"o{i}", float(i)) for i in range(n)]


async def direct_throughput(prefix: str, n: int) -> float:
    bus = Dispatcher(transport=transport(prefix))
    bus.register(Order)
    events = orders(n)
    async with bus:
        await bus.publish(events[0])  # the stream exists before the clock starts
        todo = iter(events[1:])
        began = time.perf_counter()

        async def publisher() -> None:
            for ev in todo:
                await bus.publish(ev)

        async with anyio.create_task_group() as tg:
            for _ in range(TASKS):
                tg.start_soon(publisher)
        return (n - 1) / (time.perf_counter() - began)


async def relay_throughput(tables: Tables, prefix: str, n: int, profile: bool) -> float:
    bus = Dispatcher(transport=transport(prefix))
    bus.register(Order)
    outbox = Outbox(bus, tables=tables)
    conn = await asyncpg.connect(DSN)
    async with conn.transaction():
        for ev in orders(n):
            await outbox.publish(ev, session=conn)
    await conn.close()
    profiler = cProfile.Profile() if profile else None
    async with bus:
        await bus.publish(Order("warm", 0.0))  # the stream exists before the clock starts
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async with outbox.relay(DSN, concurrency=TASKS) as relay:
            while relay.stats().sent < n:  # noqa: ASYNC110 - polling the relay's figure
                await anyio.sleep(0.001)
        elapsed = time.perf_counter() - began
        if profiler is not None:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
            (HERE / "out" / "outbox-profile-relay.txt").write_text(out.getvalue())
    return n / elapsed


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "n": len(ordered),
    }


async def latencies(tables: Tables, prefix: str, n: int, gap: float) -> dict[str, Any]:
    """Commit-to-handled through the outbox and publish-to-handled directly, on NATS;
    commit-to-handled on an in-memory route."""
    publisher = Dispatcher(transport=transport(prefix))
    consumer = Dispatcher(transport=transport(prefix))
    for bus in (publisher, consumer):
        bus.register(Order)
    started: dict[str, float] = {}
    handled: dict[str, float] = {}

    @consumer.on(Order)
    async def on_order(ev: Order) -> None:
        handled[ev.order_id] = time.perf_counter()

    outbox = Outbox(publisher, tables=tables)
    conn = await asyncpg.connect(DSN)
    result: dict[str, Any] = {}
    async with consumer, publisher, outbox.relay(DSN, poll_interval=5.0):
        await publisher.publish(Order("warm", 0.0))
        for label in ("outbox", "direct"):
            for i in range(n):
                ev = Order(f"{label}{i}", 1.0)
                if label == "outbox":
                    async with conn.transaction():
                        await outbox.publish(ev, session=conn)
                    started[ev.order_id] = time.perf_counter()  # committed
                else:
                    started[ev.order_id] = time.perf_counter()
                    await publisher.publish(ev)
                await anyio.sleep(gap)
            with anyio.fail_after(30):
                while not all(f"{label}{i}" in handled for i in range(n)):  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            result[label] = percentiles(
                [handled[f"{label}{i}"] - started[f"{label}{i}"] for i in range(n)]
            )
    # in memory: the relay hands committed events to this process's handlers
    local = Dispatcher()
    local.register(Order)

    @local.on(Order)
    async def on_local(ev: Order) -> None:
        handled[ev.order_id] = time.perf_counter()

    outbox = Outbox(local, tables=tables)
    async with local, outbox.relay(DSN, poll_interval=5.0):
        for i in range(n):
            ev = Order(f"local{i}", 1.0)
            async with conn.transaction():
                await outbox.publish(ev, session=conn)
            started[ev.order_id] = time.perf_counter()
            await anyio.sleep(gap)
        with anyio.fail_after(30):
            while not all(f"local{i}" in handled for i in range(n)):  # noqa: ASYNC110
                await anyio.sleep(0.005)
    result["in_memory"] = percentiles(
        [handled[f"local{i}"] - started[f"local{i}"] for i in range(n)]
    )
    await conn.close()
    return result


async def insert_cost(tables: Tables, prefix: str, n: int) -> dict[str, float]:
    """Median microseconds per transaction that inserts an order, without and with
    ``outbox.publish``: the statements alone (``body``) and with the commit (``total``);
    the two kinds alternate, so both see the same machine."""
    orders_table = f"{prefix}_orders"
    outbox = Outbox(Dispatcher(), tables=tables)
    outbox.bus.register(Order)
    samples: dict[str, list[float]] = {}

    def record(label: str, began: float, body_done: float) -> None:
        now = time.perf_counter()
        samples.setdefault(f"{label} body", []).append(body_done - began)
        samples.setdefault(f"{label} total", []).append(now - began)

    conn = await asyncpg.connect(DSN)
    for i in range(2 * n):
        label = "asyncpg+outbox" if i % 2 else "asyncpg"
        key = f"{label}-{i}-{uuid.uuid4().hex[:6]}"
        began = time.perf_counter()
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {orders_table} (id) VALUES ($1)", key)
            if i % 2:
                await outbox.publish(Order(key, 1.0), session=conn)
            body_done = time.perf_counter()
        record(label, began, body_done)
    await conn.close()
    engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://"))
    sessions = async_sessionmaker(engine)
    insert = text(f"INSERT INTO {orders_table} (id) VALUES (:id)")
    for i in range(2 * n):
        label = "sqlalchemy+outbox" if i % 2 else "sqlalchemy"
        key = f"{label}-{i}-{uuid.uuid4().hex[:6]}"
        async with sessions() as session:
            began = time.perf_counter()
            async with session.begin():
                await session.execute(insert, {"id": key})
                if i % 2:
                    await outbox.publish(Order(key, 1.0), session=session)
                body_done = time.perf_counter()
            record(label, began, body_done)
    await engine.dispose()
    return {label: statistics.median(values[n // 10 :]) * 1e6 for label, values in samples.items()}


async def main(quick: bool, profile: bool) -> dict[str, Any]:
    n = 2_000 if quick else 10_000
    load_before = os.getloadavg()
    report: dict[str, Any] = {"events": n}
    async with environment() as (tables, prefix):
        direct, relay = [], []
        for _ in range(1 if quick else 3):  # rounds, alternating
            direct.append(await direct_throughput(prefix + "d", n))
            relay.append(await relay_throughput(tables, prefix + "r", n, profile))
        report["throughput"] = {
            "direct_per_s": max(direct),
            "relay_per_s": max(relay),
            "ratio": max(relay) / max(direct),
            "rounds": {"direct": direct, "relay": relay},
        }
        report["latency"] = await latencies(tables, prefix + "l", 200 if quick else 500, 0.004)
        report["insert_us"] = await insert_cost(tables, prefix, 300 if quick else 1_000)
    report["loadavg"] = {"before": load_before, "after": os.getloadavg()}
    return report


def show(report: dict[str, Any]) -> None:
    t, lat, ins = report["throughput"], report["latency"], report["insert_us"]
    print(f"throughput ({report['events']} events to NATS, best round)")
    print(f"  direct publish (100 tasks)   {t['direct_per_s']:>9.0f} /s")
    print(
        f"  outbox relay                 {t['relay_per_s']:>9.0f} /s   {t['ratio']:.2f}x (>= 0.5)"
    )
    print("latency, ms                       p50      p99")
    for label, name in (
        ("outbox", "commit -> handled (NATS)"),
        ("direct", "publish -> handled (NATS)"),
        ("in_memory", "commit -> handled (memory)"),
    ):
        print(f"  {name:<28} {lat[label]['p50_ms']:>7.2f}  {lat[label]['p99_ms']:>7.2f}")
    print("per transaction that inserts an order, median us: alone / with outbox.publish")
    for driver in ("asyncpg", "sqlalchemy"):
        for part in ("body", "total"):
            alone, both = ins[f"{driver} {part}"], ins[f"{driver}+outbox {part}"]
            what = "statements" if part == "body" else "with commit"
            print(f"  {driver:<11} {what:<12} {alone:>7.0f} / {both:>7.0f}   +{both - alone:.0f}")
    print(f"load average: {report['loadavg']}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile the relay's runs")
    args = parser.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    report = anyio.run(main, args.quick, args.profile)
    show(report)
    (HERE / "out" / "outbox.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    run()
