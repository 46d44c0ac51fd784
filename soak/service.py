"""One soak process: ``python -m soak.service --backend memory|nats|redis --out DIR ...``.

The service publishes and handles the five types (the demo's shape), restarts its
dispatcher every ``--life`` seconds (a handler hanging past the shutdown timeout
each time) and injects its own faults on a schedule: bursts above capacity,
``configure`` and pause / resume at run time; handlers fail and time out. It
samples itself each second into ``samples.jsonl`` and, at the end, writes
``ledger.json``: every accepted event must have reached a handler or a dead letter,
its own or a worker's. With ``--worker`` it only consumes (a process the
orchestrator kills and restarts), writing what it saw to ``--out``.

Memory is sampled as it matters for a leak (docs/CONTRIBUTING.md has the figures):

- a closed dispatcher is left in reference cycles (its parts refer to it; the
  broker clients' parts to each other): about 45 KiB in memory, 85 KiB with
  NATS, 220 KiB with Redis that only the cyclic garbage collector frees. Its
  full collection came every 4 to 6 minutes (6 to 9 of the soak's 40-second
  lives), so dead dispatchers piled up, were freed at once, and each pile raised
  what the allocators keep. A service does not restart its dispatcher every 40
  seconds: the soak collects each life's dispatcher as the next one starts
  (``collected`` in the samples: the objects it freed);
- glibc keeps freed heap pages resident: every ``--trim-every`` samples the
  sampler reads RSS, calls ``malloc_trim(0)`` and reads it again
  (``rss_trimmed_mib``, the figure judged; see ``soak.trim``).

A leak survives both: what is still referenced is neither collected nor trimmed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

import anyio
import psutil

from eventcore import DeadLetter, Dispatcher, EventcoreError, QueueFull
from eventcore._demo import POLICIES

from . import trim
from .events import (
    SHAPE,
    Order,
    PageView,
    Payment,
    Reading,
    Receipt,
    configure,
    cost,
)
from .ledger import Ledger

#: events a handler of Reading may take before it times out
READING_TIMEOUT = 0.02


class Numbers:
    """Unique event numbers per process (a worker's Receipts are its Orders' numbers)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


def transport(args: argparse.Namespace) -> Any:
    """The backend's transport (None: in memory)."""
    if args.backend == "nats":
        from eventcore.transports.nats import NatsTransport

        return NatsTransport(args.url, group="soak", prefix=args.prefix, ack_wait=2.0,
                             fetch_wait=0.2, publish_timeout=2.0, max_deliver=20)  # fmt: skip
    if args.backend == "redis":
        from eventcore.transports.redis import RedisTransport

        return RedisTransport(args.url, group="soak", prefix=args.prefix, claim_idle=2.0,
                              max_deliver=20)  # fmt: skip
    return None


def build(args: argparse.Namespace, ledger: Ledger, hang: bool) -> Dispatcher:
    """The service's dispatcher: the demo's settings, handlers that fail, time out and
    (with *hang*) hang on the Payments numbered below zero, past the shutdown."""
    bus = Dispatcher(
        transport=transport(args),
        shutdown_timeout=1.0,
        on_drop=lambda event, reason: ledger.bury(event),
        on_dead_letter=lambda letter: ledger.bury(letter.event),
        on_error=lambda event, handler, exc: None,
    )
    configure(bus)

    async def work(event: Any) -> None:
        ledger.see(event)
        await anyio.sleep(cost(type(event)) * random.uniform(0.5, 1.5))
        if isinstance(event, Order):
            receipt = Receipt(event.n)
            if await bus.publish(receipt):
                ledger.accept(receipt)

    async def reading(event: Reading) -> None:
        ledger.see(event)
        slow = event.n % 10 == 0  # these time out
        await anyio.sleep(READING_TIMEOUT * 5 if slow else cost(Reading))

    async def payment(event: Payment) -> None:
        ledger.see(event)
        if event.n < 0 and hang:
            await anyio.sleep_forever()  # hangs past the shutdown timeout
        await anyio.sleep(cost(Payment))
        if event.n % 40 == 0:
            raise RuntimeError(f"card declined for payment {event.n}")

    for cls in (Order, Receipt, PageView):
        bus.subscribe(cls, work)
    bus.subscribe(Reading, reading, timeout=READING_TIMEOUT)
    bus.subscribe(Payment, payment)
    bus.subscribe(DeadLetter, _ignore)
    return bus


async def _ignore(letter: DeadLetter) -> None:
    """Dead letters are counted by the hook; a subscriber keeps them flowing."""


async def _publish(bus: Dispatcher, ledger: Ledger, event: Any) -> None:
    try:
        if await bus.publish(event, timeout=5.0):
            ledger.accept(event)
    except QueueFull:
        await anyio.sleep(0.02)  # RAISE: back off, as a caller would
    except EventcoreError:
        await anyio.sleep(0.05)  # a broker down or a timeout: the event was not accepted


async def feed(bus: Dispatcher, ledger: Ledger, numbers: Numbers, rate: float) -> None:
    """Steady traffic below capacity, every type."""
    while True:
        for cls, count in ((Order, 5), (PageView, 8), (Reading, 4), (Payment, 2)):
            for _ in range(max(1, round(count * rate))):
                await _publish(bus, ledger, cls(numbers.take()))
        await anyio.sleep(0.02)


async def faults(bus: Dispatcher, ledger: Ledger, numbers: Numbers, life: float) -> None:
    """This life's faults: bursts, reconfiguration, pause / resume, then hanging handlers."""
    started = time.monotonic()

    async def at(second: float) -> bool:
        wait = started + second - time.monotonic()
        if second >= life:
            return False
        await anyio.sleep(max(0.0, wait))
        return True

    if await at(4):  # a burst above capacity of every type
        for cls in (Order, PageView, Reading, Payment):
            for _ in range(3 * POLICIES[SHAPE[cls]][1]):
                await _publish(bus, ledger, cls(numbers.take()))
    if await at(8):  # narrower at run time
        bus.configure(Reading, queue_size=8, concurrency=2)
        bus.configure(Order, concurrency=2)
    if await at(12):
        bus.pause(PageView)
        bus.pause(Order)
    if await at(15):
        bus.resume(PageView)
        bus.resume(Order)
    if await at(18):  # back to the demo's settings
        configure(bus)
    if await at(life - 3):  # handlers that will hang past the shutdown
        for _ in range(2):
            await _publish(bus, ledger, Payment(-numbers.take()))


class Sampler:
    """The process's figures and the dispatcher's counters, once a second, as JSON lines."""

    def __init__(self, out: TextIO, trim_every: int = 0) -> None:
        self.out = out
        #: samples between two ``malloc_trim(0)`` (0: never; see ``soak.trim``)
        self.trim_every = trim_every if trim.available() else 0
        self.samples = 0
        self.process = psutil.Process()
        self.bus: Dispatcher | None = None
        self.life = 0
        self.before: dict[str, int] = {}
        self.started = time.monotonic()
        self.ledger: Ledger | None = None
        #: objects the collection after the last life freed (its dispatcher's cycles)
        self.collected = 0

    def retire(self, bus: Dispatcher) -> None:
        """Add a finished dispatcher's counters to the totals."""
        for name, value in _totals(bus).items():
            if name not in _GAUGES:
                self.before[name] = self.before.get(name, 0) + value

    def sample(self) -> dict[str, Any]:
        bus = self.bus
        row: dict[str, Any] = {
            "t": round(time.monotonic() - self.started, 3),
            "life": self.life,
            "rss_mib": self._rss(),
            "fds": self.process.num_fds(),
            "threads": threading.active_count(),
            "os_threads": self.process.num_threads(),
            "tasks": len(asyncio.all_tasks()),
        }
        row["collected"] = self.collected
        if self.trim_every and self.samples % self.trim_every == 0:
            trim.trim()
            row["rss_trimmed_mib"] = self._rss()
        self.samples += 1
        now = _totals(bus) if bus is not None else {}
        row.update({k: self.before.get(k, 0) + now.get(k, 0) for k in {*self.before, *now}})
        row["backlog"] = now.get("queued", 0) + now.get("in_flight", 0)
        if self.ledger is not None:
            row["ledger_pending"] = len(self.ledger.pending)
            row["ledger_early"] = len(self.ledger.early)
        row["broken"] = _broken(bus) if bus is not None else []
        return row

    def _rss(self) -> float:
        rss: int = self.process.memory_info().rss
        return round(rss / 2**20, 2)

    async def run(self) -> None:
        while True:
            self.out.write(json.dumps(self.sample()) + "\n")
            self.out.flush()
            await anyio.sleep(1.0)


_COUNTERS = ("accepted", "handled", "failed", "dropped", "refused", "evicted", "abandoned",
             "queued", "in_flight")  # fmt: skip


#: figures of the moment, not carried over from one dispatcher to the next
_GAUGES = ("queued", "in_flight", "broker_pending")


def _totals(bus: Dispatcher) -> dict[str, int]:
    stats = [s for cls, s in bus.stats().items() if cls in SHAPE]
    out = {name: sum(getattr(s, name) for s in stats) for name in _COUNTERS}
    out["broker_pending"] = sum(s.broker.pending or 0 for s in stats if s.broker is not None)
    return out


def _broken(bus: Dispatcher) -> list[str]:
    """Types whose snapshot breaks ``accepted == handled + queued + in_flight + evicted +
    abandoned`` (see ``TypeStats``), or whose queue holds more than it may."""
    broken = []
    for cls, s in bus.stats().items():
        if cls not in SHAPE:
            continue
        if s.accepted != s.handled + s.queued + s.in_flight + s.evicted + s.abandoned:
            broken.append(f"{cls.__name__}: identity {s}")
        if s.queued > POLICIES[SHAPE[cls]][1]:
            broken.append(f"{cls.__name__}: {s.queued} queued")
    return broken


async def serve(args: argparse.Namespace) -> None:
    """The service: lives of ``--life`` seconds until ``--feed``, then settle."""
    out = Path(args.out)
    ledger, numbers = Ledger(), Numbers()
    with (out / "samples.jsonl").open("w") as samples:
        sampler = Sampler(samples, trim_every=args.trim_every)
        sampler.ledger = ledger
        ends = time.monotonic() + args.feed
        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler.run)
            tg.start_soon(keep_books, ledger, out)
            while time.monotonic() < ends - 1:
                life = min(args.life, ends - time.monotonic())
                bus = build(args, ledger, hang=True)
                sampler.bus, sampler.life = bus, sampler.life + 1
                # the last life's dispatcher is garbage now, in reference cycles: freed
                # now, not by a full collection 6 to 9 lives later (see the module doc)
                sampler.collected = gc.collect()
                async with AsyncExitStack() as stack:
                    if not await start(stack, bus, ends):
                        break
                    async with anyio.create_task_group() as running:
                        running.start_soon(feed, bus, ledger, numbers, args.rate)
                        running.start_soon(faults, bus, ledger, numbers, life)
                        await anyio.sleep(life)
                        running.cancel_scope.cancel()
                sampler.bus = None
                sampler.retire(bus)
                if broken := _broken(bus):
                    print(f"after life {sampler.life}: {broken}", file=sys.stderr)
            print("settling", flush=True)
            await settle(args, ledger, sampler)
            tg.cancel_scope.cancel()
    lost = ledger.lost()
    report = {"accepted": ledger.accepted, "outcomes": ledger.outcomes,
              "lost": len(lost), "lost_examples": lost[:20]}  # fmt: skip

    (out / "ledger.json").write_text(json.dumps(report, indent=2) + "\n")


async def start(stack: AsyncExitStack, bus: Dispatcher, ends: float) -> bool:
    """Start *bus*, again and again while its broker is down (being restarted)."""
    while True:
        try:
            await stack.enter_async_context(bus)
            return True
        except (EventcoreError, OSError) as exc:
            print(f"cannot start: {exc!r}", file=sys.stderr, flush=True)
            if time.monotonic() > ends:
                return False
            await anyio.sleep(1.0)


async def settle(args: argparse.Namespace, ledger: Ledger, sampler: Sampler) -> None:
    """No more publishing: consume what is left until every accepted event is accounted
    for (the workers' journals included) or ``--settle`` seconds pass."""
    bus = build(args, ledger, hang=False)
    sampler.bus = bus
    deadline = time.monotonic() + args.settle
    async with AsyncExitStack() as stack:
        await start(stack, bus, deadline)
        while time.monotonic() < deadline:
            await bus.drain()
            follow_workers(ledger, Path(args.out))
            if not ledger.lost():
                break
            await anyio.sleep(0.5)
    sampler.bus = None
    sampler.retire(bus)


def follow_workers(ledger: Ledger, folder: Path) -> None:
    """Apply what the workers journaled since last time; forget stale early outcomes."""
    for journal in sorted(folder.glob("worker-*.log")):
        ledger.follow(journal)
    ledger.expire()


async def keep_books(ledger: Ledger, folder: Path) -> None:
    """Once a second, for the life of the service: the workers' journals, the expiry
    (in the event loop's thread, as every other change of the ledger)."""
    while True:
        follow_workers(ledger, folder)
        await anyio.sleep(1.0)


async def work_only(args: argparse.Namespace) -> None:
    """A worker: consume until killed (or SIGTERM), journaling what it saw."""
    with open(args.out, "a", buffering=1) as journal:  # noqa: ASYNC230 - the process's life
        ledger = Ledger(journal)
        bus = build(args, ledger, hang=False)
        async with bus:
            print("ready", flush=True)
            await anyio.sleep_forever()


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m soak.service")
    parser.add_argument("--backend", choices=("memory", "nats", "redis"), required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--prefix", default="soak")
    parser.add_argument("--out", required=True, help="a folder; a worker's journal file")
    parser.add_argument("--feed", type=float, default=100.0, help="seconds of traffic")
    parser.add_argument("--life", type=float, default=40.0, help="seconds between restarts")
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1.0, help="traffic, x the base rate")
    parser.add_argument("--trim-every", type=int, default=10,
                        help="samples between two malloc_trim(0) (0: never)")  # fmt: skip
    parser.add_argument("--worker", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the service or a worker on asyncio (the brokers' clients need it)."""
    args = options(argv)
    random.seed(os.getpid())
    asyncio.run(work_only(args) if args.worker else serve(args))


if __name__ == "__main__":
    main()
