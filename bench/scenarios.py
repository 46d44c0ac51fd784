"""The scenarios of issue 6 and the runner: contenders interleaved round by round.

Each run gets a fresh event loop (``anyio.run``), fresh handlers and a fresh
counter; the clock covers the first publish up to the moment every handler call
was seen. A run whose handlers saw fewer calls than expected, that raised, or
that ran out of time is recorded as failed, never timed as fast.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import anyio

from .contenders import BY_NAME, CONTENDERS, Contender, Session
from .workloads import Counter, Publish, Spec, make_handler, make_types

Record = dict[str, Any]

#: contenders of the slow scenarios, per loop (a latency run lasts 5 s, an overload
#: run 20 s at least): the floors, eventcore, and the queued peers on asyncio
LATENCY_SET = {
    "asyncio": ("bare_queue", "eventcore", "pyee", "aiopubsub"),
    "uvloop": ("bare_queue", "eventcore"),
    "trio": ("eventcore",),
}
QUICK_LATENCY_SET = {
    "asyncio": ("bare_queue", "eventcore"),
    "uvloop": ("bare_queue", "eventcore"),
    "trio": ("eventcore",),
}
#: ``--quick`` runs 10,000 types with the floors and eventcore only: the per-type
#: warm-up of every peer would take half of the minute
QUICK_MANY_TYPES_SET: dict[str, tuple[str, ...]] = {
    "asyncio": ("bare_queue", "eventcore"),
    "uvloop": ("bare_queue", "eventcore"),
    "trio": ("anyio_stream", "eventcore"),
}
OVERLOAD_SET = {
    "asyncio": (
        "bare_queue",
        "anyio_stream",
        "eventcore",
        "pyee",
        "aiopubsub",
        "fastapi_events",
    ),
    "uvloop": ("eventcore",),
    "trio": ("eventcore",),
}


def scenarios(quick: bool) -> list[Spec]:
    """The scenario list; ``quick`` has a twentieth of the events, 0.5 s latency runs."""
    k = 20 if quick else 1
    latency_s = 0.5 if quick else 5.0
    return [
        Spec("1type", "throughput: 1 type, 1 handler", 200_000 // k),
        Spec("fanout10", "fan-out: 10 handlers", 40_000 // k, n_handlers=10),
        Spec("fanout100", "fan-out: 100 handlers", 4_000 // k, n_handlers=100),
        Spec("types100", "100 types round-robin", 200_000 // k, n_types=100),
        Spec("types10000", "10,000 types round-robin", 200_000 // k * 2, n_types=10_000),
        Spec("conc1", "concurrency 1, yielding handler", 100_000 // k, body="yield"),
        Spec("conc4", "concurrency 4, yielding handler", 100_000 // k, 1, 1, 4, "yield"),
        Spec("conc16", "concurrency 16, yielding handler", 100_000 // k, 1, 1, 16, "yield"),
        Spec("roundtrip", "publish_and_wait round trip", 40_000 // k, mode="roundtrip"),
        Spec(
            "latency",
            f"latency: 20,000 ev/s for {latency_s:g} s",
            int(20_000 * latency_s),
            body="latency",
            mode="paced",
            rate=20_000.0,
            duration=latency_s,
        ),
        Spec(
            "overload",
            "overload: ~20 µs handler, peak RSS growth",
            1_000_000 // k,
            body="busy",
        ),
    ]


def loops(scenario: str) -> tuple[str, ...]:
    """The event loops a scenario runs on."""
    return ("asyncio", "uvloop", "trio")


def contenders_for(
    spec: Spec, backend: str, quick: bool = False
) -> tuple[list[Contender], list[Record]]:
    """The contenders of *spec* on *backend*, and a record for each that sits it out."""
    chosen: list[Contender] = []
    skipped: list[Record] = []
    latency = QUICK_LATENCY_SET if quick else LATENCY_SET
    slow_sets = {"latency": latency, "overload": OVERLOAD_SET}
    if quick:
        slow_sets["types10000"] = QUICK_MANY_TYPES_SET
    only = slow_sets.get(spec.scenario)
    for cls in CONTENDERS:
        if backend not in cls.backends:
            continue  # asyncio-only peers are not listed as skipped on trio
        contender = cls()
        why = contender.skip_reason(spec, backend)
        if why is None and only is not None and cls.name not in only[backend]:
            why = "left out of this loop's slow runs (time budget)"
        if why is None:
            chosen.append(contender)
        else:
            skipped.append(_record(spec, backend, contender, skipped=why))
    return chosen, skipped


def _record(spec: Spec, backend: str, contender: Contender, **fields: Any) -> Record:
    record: Record = {
        "scenario": spec.scenario,
        "title": spec.title,
        "backend": backend,
        "contender": contender.name,
        "label": contender.label,
    }
    record.update(fields)
    return record


# -- one run ---------------------------------------------------------------------------


def _sleep_of(backend: str) -> Callable[[float], Awaitable[Any]]:
    if backend == "trio":
        import trio

        return trio.sleep
    import asyncio

    return asyncio.sleep


def run_anyio(main: Callable[[], Awaitable[Any]], backend: str) -> Any:
    """Run *main* on a fresh event loop of *backend* (asyncio, uvloop or trio)."""
    if backend == "trio":
        return anyio.run(main, backend="trio")
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    return anyio.run(main, backend="asyncio", backend_options=options)


async def _burst(pubs: Sequence[Publish], events: Sequence[Any], n: int) -> None:
    if len(pubs) == 1:
        publish, ev = pubs[0], events[0]
        for _ in range(n):
            await publish(ev)
        return
    pairs = list(zip(pubs, events, strict=True))
    for _ in range(n // len(pairs)):
        for publish, ev in pairs:
            await publish(ev)
    for publish, ev in pairs[: n % len(pairs)]:
        await publish(ev)


async def _paced(
    session: Session,
    types: Sequence[type],
    spec: Spec,
    sleep: Callable[[float], Awaitable[Any]],
) -> float:
    """Publish at ``spec.rate``, each event stamped with its publish time; the rate kept."""
    clock = time.perf_counter
    interval = 1.0 / spec.rate
    pubs, n_types = session.publish, len(types)
    start = clock()
    for i in range(spec.n_events):
        due = start + i * interval
        while clock() < due:
            await sleep(0)
        k = i % n_types
        await pubs[k](types[k](clock()))
    return spec.n_events / (clock() - start)


def run_once(contender: Contender, spec: Spec, backend: str, timeout: float) -> Record:
    """One run of *contender* on *spec*: timed, counted, on a fresh event loop."""
    counter = Counter()
    sleep = _sleep_of(backend)
    types = make_types(spec.n_types)
    handlers = [
        [make_handler(contender.sig, spec.body, counter, sleep) for _ in range(spec.n_handlers)]
        for _ in types
    ]
    extra: Record = {}

    # With many types, one event of each is published and handled before the clock
    # starts: the first event of a type sets up its routing (eventcore resolves its
    # subscriptions), a one-off cost that is measured apart as ``warmup_seconds``.
    warmup = spec.n_types if spec.n_types > 1 and spec.mode == "burst" else 0
    counter.expected = spec.calls + warmup * spec.n_handlers

    async def main() -> float:
        async with contender.session(spec, types, handlers, counter) as session:
            events = [cls() for cls in types]
            if warmup:
                began = time.perf_counter()
                with anyio.fail_after(timeout):
                    await _burst(session.publish, events, warmup)
                    while counter.n < warmup * spec.n_handlers:  # noqa: ASYNC110
                        await anyio.sleep(0.001)
                extra["warmup_seconds"] = time.perf_counter() - began
            gc.collect()
            cpu = time.process_time()
            start = time.perf_counter()
            with anyio.fail_after(timeout):
                if spec.mode == "paced":
                    extra["rate"] = await _paced(session, types, spec, sleep)
                elif session.burst is not None:
                    await session.burst(events, spec.n_events)
                else:
                    await _burst(session.publish, events, spec.n_events)
                await session.drain()
            seconds = time.perf_counter() - start
            extra["cpu_seconds"] = time.process_time() - cpu
            return seconds

    error = None
    seconds = float("nan")
    try:
        seconds = run_anyio(main, backend)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    seen, expected = counter.n, counter.expected
    ok = error is None and seen == expected
    if error is None and seen != expected:
        error = f"handlers saw {seen} of {expected} calls"
    record = _record(
        spec,
        backend,
        contender,
        n_events=spec.n_events,
        calls_expected=expected,
        calls_seen=seen,
        ok=ok,
        error=error,
        seconds=seconds,
        events_per_s=spec.n_events / seconds if ok else None,
        **extra,
    )
    if ok and extra.get("cpu_seconds"):
        record["events_per_cpu_s"] = spec.n_events / extra["cpu_seconds"]
    if ok and counter.latencies:
        lat = sorted(counter.latencies)
        record["latency_us"] = {
            "p50": _pct(lat, 0.50) * 1e6,
            "p99": _pct(lat, 0.99) * 1e6,
            "p99.9": _pct(lat, 0.999) * 1e6,
            "max": lat[-1] * 1e6,
        }
    return record


def _pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- rounds ----------------------------------------------------------------------------


def rotated(items: Sequence[Contender], by: int) -> list[Contender]:
    """*items* rotated by *by* places, so no contender always runs first."""
    by %= max(1, len(items))
    return list(items[by:]) + list(items[:by])


def run_timed(
    specs: Sequence[Spec],
    rounds: int,
    budget: float,
    log: Callable[[str], None],
    only: Sequence[str] = (),
    quick: bool = False,
) -> Iterator[Record]:
    """Every in-process scenario, contenders interleaved round by round on each loop.

    A pilot run of each contender sizes its event count so that one run takes about
    *budget* seconds at most (slow peers and slow cases get fewer events; the
    count is in each record).
    """
    for spec in specs:
        if spec.scenario == "overload" or (only and spec.scenario not in only):
            continue
        for backend in loops(spec.scenario):
            chosen, skipped = contenders_for(spec, backend, quick)
            yield from skipped
            sized = {c.name: _sized(c, spec, backend, budget) for c in chosen}
            for r in range(rounds):
                for contender in rotated(chosen, r):
                    record = run_once(contender, sized[contender.name], backend, 60.0)
                    record["round"] = r
                    log(_line(record))
                    yield record


def _sized(contender: Contender, spec: Spec, backend: str, budget: float) -> Spec:
    """*spec* with as many events as *contender* handles in about *budget* seconds."""
    spec = spec.scaled(contender.scale)
    if spec.mode == "paced":
        return spec
    pilot = run_once(contender, spec.scaled(0.05), backend, 30.0)
    rate = pilot.get("events_per_s")
    if not rate:
        return spec
    return spec.scaled(budget * rate / spec.n_events)


def _line(record: Record) -> str:
    head = f"{record['scenario']:<11} {record['backend']:<7} {record['contender']:<15}"
    if not record["ok"]:
        return f"{head} FAILED: {record['error']}"
    rate = f"{record['events_per_s']:>12,.0f} ev/s"
    lat = record.get("latency_us")
    if lat:
        rate += f"  p50 {lat['p50']:.0f} µs  p99 {lat['p99']:.0f} µs  p99.9 {lat['p99.9']:.0f} µs"
    return f"{head} {rate}"


# -- overload: one fresh process per run, for peak RSS ---------------------------------


def run_overload(
    spec: Spec, timeout: float, log: Callable[[str], None], parallel: int = 2
) -> list[Record]:
    """Each overload run in its own process (so no two share a peak), *parallel* at a time.

    The handler's work is time-based (a ~20 µs spin), so two runs side by side on
    two cores take as long as one; only memory is compared here.
    """
    jobs: list[tuple[Contender, str]] = []
    records: list[Record] = []
    for backend in loops(spec.scenario):
        chosen, skipped = contenders_for(spec, backend)
        records.extend(skipped)
        jobs.extend((c, backend) for c in chosen)

    def child(job: tuple[Contender, str]) -> Record:
        contender, backend = job
        n = spec.scaled(contender.scale).n_events  # slow peers: fewer (their growth is linear)
        cmd = [sys.executable, "-m", "bench.rss", contender.name, backend, str(n)]
        env = dict(os.environ, PYTHONHASHSEED="0")
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            return _record(spec, backend, contender, ok=False, error=f"over {timeout} s")
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            return _record(spec, backend, contender, ok=False, error=error)
        record: Record = json.loads(lines[-1])
        return record

    with ThreadPoolExecutor(parallel) as pool:
        for record in pool.map(child, jobs):
            record["round"] = 0
            mb = record.get("rss_growth_mb")
            tail = f"{mb:8.1f} MB peak RSS growth" if record.get("ok") else ""
            log(f"{_line(record)}  {tail}")
            records.append(record)
    return records


def spec_dict(spec: Spec) -> Record:
    """A spec as plain data, for the JSON."""
    return asdict(spec)


__all__ = ["BY_NAME", "run_once", "run_overload", "run_timed", "scenarios"]
