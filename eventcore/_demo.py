"""``eventcore demo``: a simulated shop service that shows backpressure and every overflow policy.

Five event types, each configured to show one behaviour, are fed by publishers
that burst above what the handlers can take. A live table (rich, when installed
and stdout is a terminal; plain lines otherwise) shows queue depth, in-flight
handlers and counters per type; a summary table closes the run. The live
dashboard is served on 127.0.0.1 while it runs (``--no-dashboard`` skips it):
open the printed URL, or run ``eventcore top URL``.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from ._config import Overflow
from ._dispatcher import Dispatcher
from ._errors import QueueFull
from ._stats import TypeStats
from ._types import DropReason


@dataclass(frozen=True)
class OrderPlaced:
    """A customer placed an order (BLOCK: the checkout waits for room)."""

    order_id: int
    total: float


@dataclass(frozen=True)
class ReceiptSent:
    """Follow-on event published by the OrderPlaced handler."""

    order_id: int


@dataclass(frozen=True)
class PageViewed:
    """Analytics click-stream (DROP_NEWEST: shed load, the caller learns it)."""

    path: str


@dataclass(frozen=True)
class SensorReading:
    """Warehouse temperature (DROP_OLDEST: only the freshest readings matter)."""

    celsius: float


@dataclass(frozen=True)
class PaymentRequested:
    """Payment call (RAISE: the caller backs off and retries)."""

    order_id: int


POLICIES: dict[type, tuple[Overflow, int, int, float]] = {
    # event type: (overflow, queue_size, concurrency, seconds per handler call)
    OrderPlaced: (Overflow.BLOCK, 32, 4, 0.004),
    ReceiptSent: (Overflow.BLOCK, 256, 8, 0.001),
    PageViewed: (Overflow.DROP_NEWEST, 64, 2, 0.002),
    SensorReading: (Overflow.DROP_OLDEST, 16, 1, 0.003),
    PaymentRequested: (Overflow.RAISE, 16, 2, 0.003),
}


@dataclass
class DemoReport:
    """What the publishers saw, next to what the dispatcher counted."""

    #: publish calls made by the feeds (ReceiptSent is published by a handler)
    published: dict[type, int] = field(default_factory=lambda: dict.fromkeys(POLICIES, 0))
    blocked_seconds: float = 0.0
    backoffs: int = 0
    evicted_examples: list[float] = field(default_factory=list)
    peak_queued: dict[type, int] = field(default_factory=lambda: dict.fromkeys(POLICIES, 0))
    handler_errors: int = 0
    final: dict[type, TypeStats] = field(default_factory=dict)


def build(report: DemoReport) -> Dispatcher:
    """The dispatcher of the simulated service, with one handler per type."""

    def on_drop(event: object, reason: DropReason) -> None:
        if isinstance(event, SensorReading) and len(report.evicted_examples) < 3:
            report.evicted_examples.append(event.celsius)

    def on_error(event: object, handler: object, exc: BaseException) -> None:
        report.handler_errors += 1

    bus = Dispatcher(on_drop=on_drop, on_error=on_error, shutdown_timeout=5)
    for event_type, (overflow, queue_size, concurrency, _) in POLICIES.items():
        bus.configure(
            event_type, overflow=overflow, queue_size=queue_size, concurrency=concurrency
        )

    def work(event_type: type) -> Callable[[Any], Any]:
        cost = POLICIES[event_type][3]

        async def handle(event: Any) -> None:
            await anyio.sleep(cost * random.uniform(0.5, 1.5))
            if isinstance(event, OrderPlaced):
                await bus.publish(ReceiptSent(event.order_id))
                _note_peak(bus, report, ReceiptSent)  # follow-on events have peaks too
            if isinstance(event, PaymentRequested) and event.order_id % 40 == 0:
                raise RuntimeError(f"card declined for order {event.order_id}")

        handle.__qualname__ = f"handle_{event_type.__name__}"
        return handle

    for event_type in POLICIES:
        bus.subscribe(event_type, work(event_type))
    return bus


def _note_peak(bus: Dispatcher, report: DemoReport, event_type: type) -> None:
    queued = bus.stats(event_type).queued
    if queued > report.peak_queued[event_type]:
        report.peak_queued[event_type] = queued


async def _orders(bus: Dispatcher, report: DemoReport, seconds: float) -> None:
    end = time.monotonic() + seconds
    n = rounds = 0
    while time.monotonic() < end:
        burst = 200 if rounds % 25 == 0 else 5  # a rush every ~0.3 s, the first at once
        rounds += 1
        for _ in range(burst):
            n += 1
            started = time.monotonic()
            await bus.publish(OrderPlaced(n, round(random.uniform(5, 500), 2)))
            report.blocked_seconds += time.monotonic() - started
            report.published[OrderPlaced] += 1
            _note_peak(bus, report, OrderPlaced)
        await anyio.sleep(0.01)


async def _pages(bus: Dispatcher, report: DemoReport, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in range(120):
            await bus.publish(PageViewed(f"/product/{i % 17}"))
            report.published[PageViewed] += 1
            _note_peak(bus, report, PageViewed)
        await anyio.sleep(0.05)


async def _sensors(bus: Dispatcher, report: DemoReport, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(40):
            await bus.publish(SensorReading(round(random.gauss(4.0, 0.5), 2)))
            report.published[SensorReading] += 1
            _note_peak(bus, report, SensorReading)
        await anyio.sleep(0.05)


async def _payments(bus: Dispatcher, report: DemoReport, seconds: float) -> None:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        report.published[PaymentRequested] += 1
        try:
            await bus.publish(PaymentRequested(n))
            _note_peak(bus, report, PaymentRequested)
        except QueueFull:
            report.backoffs += 1
            await anyio.sleep(0.02)  # back off, as a caller would
        if n % 50 == 0:
            await anyio.sleep(0.01)


COLUMNS = ("type", "policy", "queued", "peak", "busy", "handled", "shed", "failed")
"""The live table's columns, narrow enough for an 80-column terminal (see CAPTION)."""

CAPTION = "queued, busy: now/limit · shed: dropped, evicted or refused"


def rows(bus: Dispatcher, report: DemoReport) -> list[tuple[str, ...]]:
    """One row of counters per event type (the peak counts the depth seen here too)."""
    out: list[tuple[str, ...]] = []
    for event_type, (overflow, queue_size, concurrency, _) in POLICIES.items():
        _note_peak(bus, report, event_type)
        s: TypeStats = bus.stats(event_type)
        out.append(
            (
                event_type.__name__,
                overflow.name,
                f"{s.queued}/{queue_size}",
                str(report.peak_queued[event_type]),
                f"{s.in_flight}/{concurrency}",
                str(s.handled),
                str(s.dropped + s.evicted + s.refused),
                str(s.failed),
            )
        )
    return out


def _table(title: str, data: list[tuple[str, ...]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, caption=CAPTION, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        padding=(0, 1), collapse_padding=True,
    )  # fmt: skip
    for column in COLUMNS:
        left = column in ("type", "policy")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for row in data:
        table.add_row(*row)
    return table


def _plain(data: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in data)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in data]
    return "\n".join(lines)


async def run_demo(
    seconds: float = 6.0,
    *,
    live: bool | None = None,
    dashboard_port: int | None = None,
    hold: bool | None = None,
) -> DemoReport:
    """Run the simulated service for *seconds*, showing progress, and print a summary.

    :param live: a live rich table (default: when stdout is a terminal)
    :param dashboard_port: serve the live dashboard on 127.0.0.1 at this port (0: a
        free one) while the service runs, and print its URL; None: no dashboard
    :param hold: keep the dashboard up after the summary until cancelled (Ctrl-C);
        default: when stdout is a terminal
    """
    if live is None:
        live = sys.stdout.isatty()
    if hold is None:
        hold = sys.stdout.isatty()
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        live, rich_ok = False, False
    else:
        rich_ok = True
    report = DemoReport()
    bus = build(report)
    print(f"eventcore demo: a shop service under bursts for {seconds:g} s")
    started = time.monotonic()
    async with _dashboard(bus, dashboard_port) as shown:
        if shown is not None:
            print(f"dashboard: {shown}   (in a terminal: eventcore top {shown})", flush=True)
        async with bus:  # leaving drains what was accepted
            async with anyio.create_task_group() as tg:  # the publishers
                for feed in (_orders, _pages, _sensors, _payments):
                    tg.start_soon(feed, bus, report, seconds)
                if live and rich_ok:
                    with Live(_table("live", rows(bus, report)), refresh_per_second=8) as view:
                        while time.monotonic() - started < seconds:
                            await anyio.sleep(0.125)
                            title = f"live  t={time.monotonic() - started:4.1f}s"
                            view.update(_table(title, rows(bus, report)))
                else:
                    while time.monotonic() - started < seconds:
                        await anyio.sleep(1.0)
                        print(f"\n t={time.monotonic() - started:4.1f}s")
                        print(_plain(rows(bus, report)), flush=True)
            print("\npublishers done; leaving `async with` drains what was accepted ...")
        summary = rows(bus, report)
        report.final = dict(bus.stats())
        print()
        if rich_ok and live:
            Console().print(_table("summary", summary))
        else:
            print(_plain(summary))
        _explain(bus, report)
        if shown is not None and hold:
            print(f"\nThe dashboard stays up at {shown} - press Ctrl-C to stop.", flush=True)
            await anyio.sleep_forever()
    return report


@asynccontextmanager
async def _dashboard(bus: Dispatcher, port: int | None) -> AsyncIterator[str | None]:
    """Serve the dashboard of *bus* on 127.0.0.1:*port* (read-only: anyone on this
    machine may look); yields its URL, or None when *port* is None."""
    if port is None:
        yield None
        return
    from .dashboard import Dashboard
    from .dashboard.serve import serve

    logger = logging.getLogger("eventcore.dashboard")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warning about no auth=: loopback only, said above
    try:
        dashboard = Dashboard(bus, interval=0.5)
    finally:
        logger.setLevel(level)  # the caller's logging as it was (tests, an app)
    async with dashboard, anyio.create_task_group() as server:
        url = await server.start(serve, dashboard, "127.0.0.1", port)
        try:
            yield url
        finally:
            server.cancel_scope.cancel()


def _explain(bus: Dispatcher, report: DemoReport) -> None:
    orders = bus.stats(OrderPlaced)
    pages = bus.stats(PageViewed)
    sensors = bus.stats(SensorReading)
    payments = bus.stats(PaymentRequested)
    receipts = bus.stats(ReceiptSent)
    peak = report.peak_queued
    print(
        f"""
What happened:
- BLOCK       OrderPlaced: {orders.accepted} accepted, none lost; the checkout waited
              {report.blocked_seconds:.2f} s in total for room (queue peak {peak[OrderPlaced]}/32:
              the bound held while the checkout was pushed back).
              Each order published a ReceiptSent follow-on: {receipts.handled} handled.
- DROP_NEWEST PageViewed: {pages.dropped} of {pages.published} refused (publish returned False),
              {pages.handled} handled; the publisher never waited.
- DROP_OLDEST SensorReading: {sensors.evicted} stale readings evicted to on_drop
              (e.g. {report.evicted_examples}), the newest {sensors.handled} handled.
- RAISE       PaymentRequested: {payments.refused} publishes raised QueueFull and the caller
              backed off {report.backoffs} times; {payments.failed} handler errors went to on_error.
- Every accepted event was handled before exit: abandoned = {sum(s.abandoned for s in bus.stats().values())}."""  # noqa: E501
    )
