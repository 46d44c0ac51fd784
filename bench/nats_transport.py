"""``python -m bench.nats_transport [--quick] [--profile]``: the NATS JetStream transport
beside raw nats-py and FastStream doing the same work (issue 12, "Speed").

One process, one NATS server (``EVENTCORE_NATS_URL``, default
``nats://127.0.0.1:4222``), ~100-byte JSON events, file storage, work-queue
streams, durable pull consumers with explicit acks. Every publish counts only
once the server acknowledged it. Scenarios, each in rounds interleaving the
contenders (each round starting with another one; medians and best rounds are
reported, so every contender sees the same machine):

* ``sequential``: one publisher awaiting each ack (raw ``js.publish``,
  ``await bus.publish(ev)``, FastStream ``await broker.publish(..., stream=...)``);
* ``concurrent64``: 64 publisher tasks each awaiting its own ack; raw both as
  ``publish_async`` with every ack awaited (the target's baseline) and as 64 tasks
  of ``js.publish``; raw ``js.publish`` also with the ``Nats-Msg-Id`` header that
  eventcore sends (both publish scenarios);
* ``end_to_end``: 64 publisher tasks and a consumer in the same process, timed
  until the last event was handled (raw: fetch batches of 256, ack each);
* ``drain``: consumption alone: the events published first, then the consumer
  started and timed until it handled them all;
* ``latency``: a paced 2 k events/s (open loop: a task per publish) for a few
  seconds; latency = handler time - the timestamp in the event.

Ratios are eventcore's throughput over the baseline's, measured in the same run;
the targets are the issue's. Beside wall-clock rates, each run records this
process's CPU time per event, which the machine's other load disturbs less.
``--profile`` adds cProfile runs of eventcore and raw nats-py in the throughput
scenarios (``bench/out/nats-profile-SCENARIO-CONTENDER.txt``). Writes
``bench/out/nats.json`` (with the load average before and after); streams get a
unique prefix and are deleted afterwards.
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
import platform
import pstats
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from eventcore import Dispatcher
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

HERE = Path(__file__).resolve().parent
URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
TASKS = 64
RATE = 2_000.0
GROUP = "bench"

#: (scenario, baseline contender, target ratio of eventcore over it)
TARGETS = (
    ("sequential", "raw js.publish", 0.9),
    ("sequential", "FastStream", 3.0),
    ("concurrent64", "raw publish_async", 0.8),
    ("concurrent64", "FastStream", 3.0),
)


@event("bench.nats.order")
@dataclass(frozen=True)
class Order:
    order_id: str
    total: float
    currency: str
    sku: str
    quantity: int
    sent: float  # perf_counter() when published: the latency's start


def _order(i: int) -> Order:
    """Event *i*; a negative *i* is a warm-up event, which consumers skip."""
    sent = time.perf_counter() if i >= 0 else -1.0
    return Order(f"A-{i:08d}", 99.5, "EUR", f"SKU-{i % 100_000:05d}", 3, sent)


def _payload(i: int) -> dict[str, Any]:
    return {
        "order_id": f"A-{i:08d}",
        "total": 99.5,
        "currency": "EUR",
        "sku": f"SKU-{i % 100_000:05d}",
        "quantity": 3,
        "sent": time.perf_counter(),
    }


def _raw_bytes(i: int) -> bytes:
    return json.dumps(_payload(i), separators=(",", ":")).encode()


# -- the contenders ---------------------------------------------------------------------
#
# Each is opened for one run of one scenario and closed after it (opening, stream
# and consumer creation are outside the timing). `publish(i)` returns once the
# server acknowledged event i; `consume(n, seen)` makes the contender's consumer
# call `seen(sent_timestamp)` for each handled event.


class Contender:
    name = ""
    #: open() keeps the stream and what it holds (the drain scenario's second open)
    keep = False

    async def open(self, consume: Callable[[float], None] | None) -> None:
        raise NotImplementedError

    async def publish(self, i: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RawNats(Contender):
    """nats-py on its own: ``js.publish`` (optionally with the dedup header eventcore
    sends), and a durable pull consumer fetching batches of 256, acking each."""

    def __init__(self, prefix: str, name: str = "raw js.publish", msg_id: bool = False):
        self.name = name
        self.stream = f"{prefix}_raw"
        self.subject = f"{prefix}.raw.order.0"
        self.msg_id = msg_id
        self._nc: Any = None
        self._js: Any = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self, consume: Callable[[float], None] | None) -> None:
        self._nc = await nats.connect(URL)
        self._js = self._nc.jetstream(timeout=5.0)
        if not self.keep:
            await _fresh_stream(self._js, self.stream, self.subject)
        if consume is not None:
            await self._js.add_consumer(
                self.stream,
                ConsumerConfig(
                    durable_name=GROUP,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30.0,
                    max_ack_pending=1024,
                    filter_subject=self.subject,
                ),
            )
            sub = await self._js.pull_subscribe_bind(GROUP, self.stream)
            self._pump = asyncio.get_running_loop().create_task(self._consume(sub, consume))

    async def _consume(self, sub: Any, seen: Callable[[float], None]) -> None:
        while True:
            try:
                msgs = await sub.fetch(256, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            for msg in msgs:
                seen(json.loads(msg.data)["sent"])
                await msg.ack()

    async def publish(self, i: int) -> None:
        headers = {"Nats-Msg-Id": uuid.uuid4().hex} if self.msg_id else None
        await self._js.publish(self.subject, _raw_bytes(i), headers=headers)

    async def publish_async_all(self, n: int) -> None:
        """Every publish sent without waiting (acks pipelined), then every ack awaited."""
        futures = [await self._js.publish_async(self.subject, _raw_bytes(i)) for i in range(n)]
        for ack in await asyncio.gather(*futures):
            assert ack.seq > 0

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self._nc.flush()
        await self._nc.close()


class EventcoreNats(Contender):
    """``Dispatcher(transport=NatsTransport(...))`` with the transport's defaults."""

    name = "eventcore"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.bus: Dispatcher | None = None

    async def open(self, consume: Callable[[float], None] | None) -> None:
        self.bus = Dispatcher(transport=NatsTransport(URL, group=GROUP, prefix=self.prefix))
        if consume is not None:

            async def handle(order: Order) -> None:
                consume(order.sent)

            self.bus.subscribe(Order, handle)
        await self.bus.__aenter__()
        # the route's stream is checked on first use: outside the timing (a consumer
        # skips this event; a publisher's stream is emptied again)
        await self.bus.publish(_order(-1))
        if consume is None:
            await _purge(self.prefix)

    async def publish(self, i: int) -> None:
        assert self.bus is not None
        await self.bus.publish(_order(i))

    async def close(self) -> None:
        assert self.bus is not None
        await self.bus.__aexit__(None, None, None)


class FastStreamNats(Contender):
    """FastStream's NatsBroker: ``broker.publish(..., stream=...)`` and a JetStream pull
    subscriber (batches of up to 256, acked after the handler)."""

    name = "FastStream"

    def __init__(self, prefix: str) -> None:
        self.stream = f"{prefix}_faststream"
        self.subject = f"{prefix}.fs.order.0"
        self._broker: Any = None

    async def open(self, consume: Callable[[float], None] | None) -> None:
        fs: Any = importlib.import_module("faststream.nats")  # bench-only, untyped here
        JStream, NatsBroker, PullSub = fs.JStream, fs.NatsBroker, fs.PullSub

        broker = NatsBroker(URL, logger=None)
        if not self.keep:
            nc = await nats.connect(URL)
            try:
                await _fresh_stream(nc.jetstream(), self.stream, self.subject)
            finally:
                await nc.close()
        if consume is not None:
            stream = JStream(
                self.stream,
                subjects=[self.subject],
                retention=RetentionPolicy.WORK_QUEUE,
                declare=False,
            )

            async def handle(body: dict[str, Any]) -> None:
                consume(body["sent"])

            subscribe = broker.subscriber(
                self.subject,
                stream=stream,
                durable=GROUP,
                pull_sub=PullSub(batch_size=256, timeout=1.0),
            )
            subscribe(handle)

        await broker.start()
        self._broker = broker

    async def publish(self, i: int) -> None:
        await self._broker.publish(_payload(i), self.subject, stream=self.stream, timeout=5.0)

    async def close(self) -> None:
        await self._broker.stop()


async def _fresh_stream(js: Any, name: str, subject: str) -> None:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
        )
    )


async def _purge(prefix: str) -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix + "_"):
                await js.purge_stream(info.config.name)
    finally:
        await nc.close()


async def _delete_streams(prefix: str) -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix + "_"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(info.config.name)
    finally:
        await nc.close()


# -- the scenarios ----------------------------------------------------------------------


#: set by ``--profile``: enabled only around the timed part of a scenario
_profiler: cProfile.Profile | None = None


def _timing() -> tuple[float, float]:
    if _profiler is not None:
        _profiler.enable()
    return time.perf_counter(), time.process_time()


def _timed(started: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds since *started*."""
    if _profiler is not None:
        _profiler.disable()
    return time.perf_counter() - started[0], time.process_time() - started[1]


async def _tasks(publish: Callable[[int], Awaitable[None]], n: int, tasks: int) -> None:
    """*tasks* publishers sharing *n* events, each awaiting its own acks."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await publish(i)

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def sequential(c: Contender, n: int) -> dict[str, Any]:
    await c.open(None)
    try:
        started = _timing()
        for i in range(n):
            await c.publish(i)
        elapsed, cpu = _timed(started)
    finally:
        await c.close()
    return {"events": n, "seconds": elapsed, "per_s": n / elapsed, "cpu_us": cpu / n * 1e6}


async def concurrent(c: Contender, n: int) -> dict[str, Any]:
    await c.open(None)
    try:
        started = _timing()
        if isinstance(c, RawNats) and c.name == "raw publish_async":
            await c.publish_async_all(n)
        else:
            await _tasks(c.publish, n, TASKS)
        elapsed, cpu = _timed(started)
    finally:
        await c.close()
    return {"events": n, "seconds": elapsed, "per_s": n / elapsed, "cpu_us": cpu / n * 1e6}


class _Sink:
    """Counts handled events and their latencies; wakes the waiter at *n*."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.latencies: list[float] = []
        self.done = asyncio.Event()

    def __call__(self, sent: float) -> None:
        if sent < 0:  # not one of the run's events
            return
        self.latencies.append(time.perf_counter() - sent)
        self.count += 1
        if self.count >= self.n:
            self.done.set()


async def end_to_end(c: Contender, n: int) -> dict[str, Any]:
    sink = _Sink(n)
    await c.open(sink)
    try:
        started = _timing()
        await _tasks(c.publish, n, TASKS)
        published = time.perf_counter() - started[0]
        await asyncio.wait_for(sink.done.wait(), 60.0)
        elapsed, cpu = _timed(started)
    finally:
        await c.close()
    return {
        "events": n,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "publish_per_s": n / published,
        "cpu_us": cpu / n * 1e6,
        "handled": sink.count,
    }


async def drain(c: Contender, n: int) -> dict[str, Any]:
    """Consumption alone: *n* events published first, then a consumer started and
    timed (its start included) until it handled them all."""
    await c.open(None)
    try:
        await _tasks(c.publish, n, TASKS)
    finally:
        await c.close()
    sink = _Sink(n)
    c.keep = True
    try:
        started = _timing()
        await c.open(sink)
        try:
            await asyncio.wait_for(sink.done.wait(), 60.0)
            elapsed, cpu = _timed(started)
        finally:
            await c.close()
    finally:
        c.keep = False
    return {"events": n, "seconds": elapsed, "per_s": n / elapsed, "cpu_us": cpu / n * 1e6}


async def latency(c: Contender, seconds: float) -> dict[str, Any]:
    n = int(RATE * seconds)
    sink = _Sink(n)
    await c.open(sink)
    pending: set[asyncio.Task[None]] = set()
    try:
        await asyncio.sleep(0.2)  # the consumer's first fetch is waiting
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        sent = 0
        while sent < n:
            due = min(n, int((time.perf_counter() - started) * RATE) + 1)
            while sent < due:
                task = loop.create_task(c.publish(sent))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.0005)
        offered = n / (time.perf_counter() - started)
        await asyncio.wait_for(sink.done.wait(), 60.0)
        if pending:
            await asyncio.gather(*pending)
    finally:
        await c.close()
    lat = sorted(sink.latencies)
    return {
        "events": n,
        "offered_per_s": offered,
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
        "max_ms": lat[-1] * 1e3,
    }


# -- the run ----------------------------------------------------------------------------


def _faststream_available() -> bool:
    try:
        importlib.import_module("faststream.nats")
    except ImportError:
        return False
    return True


async def run(quick: bool, rounds: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    prefix = "bench" + uuid.uuid4().hex[:10]
    fs = _faststream_available()
    if not fs:
        log("FastStream is not installed (pip install 'faststream[nats]'): left out")
    n_seq = 1_000 if quick else 3_000
    n_conc = 3_000 if quick else 12_000
    n_e2e = 2_000 if quick else 8_000
    lat_s = 1.0 if quick else 2.0

    def contenders(scenario: str) -> list[Contender]:
        raw: list[Contender] = []
        if scenario == "concurrent64":
            raw.append(RawNats(prefix, "raw publish_async"))
            raw.append(RawNats(prefix, "raw 64 tasks of js.publish"))
        else:
            raw.append(RawNats(prefix))
        if scenario in ("sequential", "concurrent64"):
            raw.append(RawNats(prefix, "raw js.publish + Nats-Msg-Id", msg_id=True))
        ours: list[Contender] = [EventcoreNats(prefix)]
        theirs: list[Contender] = [FastStreamNats(prefix)] if fs else []
        return raw + ours + theirs

    plan: list[tuple[str, Callable[[Contender], Awaitable[dict[str, Any]]]]] = [
        ("sequential", lambda c: sequential(c, n_seq)),
        ("concurrent64", lambda c: concurrent(c, n_conc)),
        ("end_to_end", lambda c: end_to_end(c, n_e2e)),
        ("drain", lambda c: drain(c, n_e2e)),
        ("latency", lambda c: latency(c, lat_s)),
    ]
    records: list[dict[str, Any]] = []
    try:
        for scenario, measure in plan:
            for r in range(rounds):  # interleaved: each round runs every contender,
                order = contenders(scenario)  # each round starting with another one
                for c in order[r % len(order) :] + order[: r % len(order)]:
                    await _purge(prefix)
                    result = await measure(c)
                    records.append(
                        {"scenario": scenario, "contender": c.name, "round": r, **result}
                    )
                    log(f"{scenario:<13} {c.name:<29} round {r}: {_brief(result)}")
    finally:
        await _delete_streams(prefix)
    return records


def _brief(result: dict[str, Any]) -> str:
    if "p50_ms" in result:
        return (
            f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
            f"(offered {result['offered_per_s']:,.0f}/s)"
        )
    return f"{result['per_s']:,.0f} events/s, {result['cpu_us']:.0f} us CPU/event"


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per (scenario, contender), and the ratios against the targets."""
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for rec in records:
        cell = values.setdefault((rec["scenario"], rec["contender"]), {})
        for key in ("per_s", "cpu_us", "p50_ms", "p99_ms", "max_ms", "offered_per_s"):
            if key in rec:
                cell.setdefault(key, []).append(rec[key])
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for (scenario, contender), cell in values.items():
        medians.setdefault(scenario, {})[contender] = {
            key: statistics.median(xs) for key, xs in cell.items()
        }
        if "per_s" in cell:
            medians[scenario][contender]["best_per_s"] = max(cell["per_s"])
    checks = []
    for scenario, baseline, target in TARGETS:
        row = medians.get(scenario, {})
        if baseline not in row or "eventcore" not in row:
            continue
        ratio = row["eventcore"]["per_s"] / row[baseline]["per_s"]
        best = row["eventcore"]["best_per_s"] / row[baseline]["best_per_s"]
        checks.append(
            {
                "scenario": scenario,
                "baseline": baseline,
                "ratio": round(ratio, 2),
                "ratio_best": round(best, 2),
                "target": target,
                "met": ratio >= target,
            }
        )
    for scenario in ("end_to_end", "drain"):
        row = medians.get(scenario, {})
        for baseline in ("raw js.publish", "FastStream"):
            if baseline in row and "eventcore" in row:
                ratio = row["eventcore"]["per_s"] / row[baseline]["per_s"]
                best = row["eventcore"]["best_per_s"] / row[baseline]["best_per_s"]
                checks.append(
                    {
                        "scenario": scenario,
                        "baseline": baseline,
                        "ratio": round(ratio, 2),
                        "ratio_best": round(best, 2),
                        "target": None,
                        "met": None,
                    }
                )
    return {"medians": medians, "checks": checks}


def table(summary: dict[str, Any]) -> str:
    lines = [
        (
            "| scenario | contender | events/s median (best) | eventcore / it, median (best) "
            "| client CPU µs/event |"
        ),
        "|---|---|---|---|---|",
    ]
    medians = summary["medians"]
    for scenario in ("sequential", "concurrent64", "end_to_end", "drain"):
        row = medians.get(scenario, {})
        ours = row.get("eventcore", {}).get("per_s")
        for contender, cell in row.items():
            mine = ours is None or contender == "eventcore"
            best = row["eventcore"]["best_per_s"] / cell["best_per_s"] if not mine else 0.0
            ratio = "" if mine else f"{ours / cell['per_s']:.2f}x ({best:.2f}x)"
            name = f"**{contender}**" if contender == "eventcore" else contender
            lines.append(
                f"| {scenario} | {name} | {cell['per_s']:,.0f} ({cell['best_per_s']:,.0f}) "
                f"| {ratio} | {cell['cpu_us']:.0f} |"
            )
    lines += [
        "",
        f"| latency at {RATE:,.0f}/s | p50 ms | p99 ms | max ms | offered/s |",
        "|---|---|---|---|---|",
    ]
    for contender, cell in medians.get("latency", {}).items():
        name = f"**{contender}**" if contender == "eventcore" else contender
        lines.append(
            f"| {name} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {cell['max_ms']:.1f} "
            f"| {cell['offered_per_s']:,.0f} |"
        )
    lines += [
        "",
        "| target | eventcore / baseline, median (best) | target | met (median) |",
        "|---|---|---|---|",
    ]
    for check in summary["checks"]:
        if check["target"] is None:
            continue
        lines.append(
            f"| {check['scenario']} vs {check['baseline']} | {check['ratio']:.2f}x "
            f"({check['ratio_best']:.2f}x) | >= {check['target']}x "
            f"| {'yes' if check['met'] else '**no**'} |"
        )
    return "\n".join(lines)


async def profile(quick: bool) -> str:
    """cProfile of eventcore and of raw nats-py in the throughput scenarios: the files
    ``bench/out/nats-profile-SCENARIO-CONTENDER.txt`` (own time, then cumulative);
    returns eventcore's heads and the event-loop turns per event of both."""
    global _profiler
    prefix = "benchprof" + uuid.uuid4().hex[:8]
    n_pub = 1_000 if quick else 3_000
    n_e2e = 2_000 if quick else 6_000
    plan: list[tuple[str, int, Callable[[Contender, int], Awaitable[dict[str, Any]]]]] = [
        ("sequential", n_pub, sequential),
        ("concurrent64", n_pub, concurrent),
        ("end_to_end", n_e2e, end_to_end),
        ("drain", n_e2e, drain),
    ]
    out = []
    try:
        for scenario, n, measure in plan:
            for contender in (RawNats(prefix), EventcoreNats(prefix)):
                await _purge(prefix)
                _profiler = cProfile.Profile()
                try:
                    result = await measure(contender, n)
                finally:
                    profiler, _profiler = _profiler, None
                stats = pstats.Stats(profiler)
                turns = sum(
                    v[1]
                    for k, v in stats.stats.items()  # type: ignore[attr-defined]
                    if k[2] == "_run_once"
                )
                total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
                head = (
                    f"# {scenario}, {contender.name}: {n:,} events; profiled "
                    f"{result['per_s']:,.0f} events/s, {total / n * 1e6:.0f} us/event under "
                    f"cProfile, {turns / n:.1f} event-loop turns/event\n"
                )
                own, cumulative = io.StringIO(), io.StringIO()
                pstats.Stats(profiler, stream=own).sort_stats("tottime").print_stats(35)
                pstats.Stats(profiler, stream=cumulative).sort_stats("cumulative").print_stats(45)
                slug = "eventcore" if contender.name == "eventcore" else "raw"
                path = HERE / "out" / f"nats-profile-{scenario}-{slug}.txt"
                path.write_text(head + own.getvalue() + "\n" + cumulative.getvalue())
                if slug == "eventcore":
                    out.append(head + "\n".join(own.getvalue().splitlines()[:30]))
                else:
                    out.append(head)
    finally:
        await _delete_streams(prefix)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario; print the table; write ``bench/out/nats.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.nats_transport", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events, 3 rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario (>= 3)")
    parser.add_argument("--profile", action="store_true", help="also cProfile eventcore")
    parser.add_argument("--profile-only", action="store_true", help="only the cProfile runs")
    args = parser.parse_args(argv)
    if args.profile_only:
        (HERE / "out").mkdir(exist_ok=True)
        print(asyncio.run(profile(args.quick)))
        return
    if args.quick and args.rounds == 5:
        args.rounds = 3
    started = time.time()

    def log(line: str) -> None:
        print(f"{time.time() - started:6.1f}s  {line}", flush=True)

    load_before = os.getloadavg()
    records = asyncio.run(run(args.quick, args.rounds, log))
    load_after = os.getloadavg()
    summary = summarize(records)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "quick": args.quick,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "url": URL,
    }
    try:
        from importlib.metadata import version

        meta["versions"] = {p: version(p) for p in ("nats-py", "faststream", "msgspec")}
    except Exception:  # pragma: no cover - a missing optional package
        pass
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    print()
    print(table(summary))
    print(f"\nload average (1, 5, 15 min): before {load_before}, after {load_after}")
    if args.profile:
        print()
        print(asyncio.run(profile(args.quick)))
    data = {"meta": meta, "summary": summary, "records": records}
    (out / "nats.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out / 'nats.json'}")


if __name__ == "__main__":
    main()
