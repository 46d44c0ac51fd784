"""What ``make demo-nats`` and ``make demo-redis`` share: two worker processes and a
FastAPI producer on one broker, the load, and the live table.

A :class:`Broker` says what differs: its transport, how to find or start its
server, and how to clean up the demo's streams. The example modules
(``examples.nats_scaleout``, ``examples.redis_scaleout``) each define one and call
:func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from eventcore import Dispatcher, Transport
from eventcore.integrations.fastapi import DispatcherDep, add_backpressure_handlers, lifespan
from eventcore.wire import event

PREFIX = os.environ.get("EVENTCORE_DEMO_PREFIX", "demo")


@event("demo.orders.placed")
@dataclass(frozen=True)
class OrderPlaced:
    """An order, as the producer publishes it."""

    order_id: int
    total: float


@dataclass(frozen=True)
class Broker:
    """One broker's part of the demo."""

    label: str  # "NATS JetStream"
    module: str  # the example module: its workers and its producer app run from it
    url_variable: str  # the environment variable that passes the URL to the processes
    transport: Callable[[str], Transport]  # every process's transport, for a URL
    server: Callable[[Path], tuple[str, subprocess.Popen[bytes] | None]]  # URL, private one
    cleanup: Callable[[str], None]  # delete the demo's streams


def make_app(broker: Broker, url: str) -> FastAPI:
    """The producer: ``POST /orders`` publishes an OrderPlaced (202 once the broker has it)."""
    bus = Dispatcher(transport=broker.transport(url))
    api = FastAPI(lifespan=lifespan(bus))
    add_backpressure_handlers(api)
    placed = 0

    @api.post("/orders", status_code=202)
    async def place(bus: DispatcherDep) -> dict[str, int]:
        nonlocal placed
        placed += 1
        await bus.publish(OrderPlaced(placed, round(random.uniform(5, 500), 2)), timeout=5)
        return {"order_id": placed}

    return api


async def work(broker: Broker, name: str, url: str, report: Path) -> None:
    """Handle orders until SIGTERM; write this worker's figures to *report* 5 times a second."""
    bus = Dispatcher(transport=broker.transport(url), queue_size=32, concurrency=8)

    @bus.on(OrderPlaced)
    async def fulfil(order: OrderPlaced) -> None:
        await asyncio.sleep(random.uniform(0.001, 0.005))  # the work

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        while not stop.is_set():
            stats = bus.stats(OrderPlaced)
            figures = {
                "worker": name,
                "pid": os.getpid(),
                "handled": stats.handled,
                "in_flight": stats.in_flight,
                "queued": stats.queued,
                "pending": stats.broker.pending if stats.broker else None,
            }
            await asyncio.to_thread(_write_atomically, report, json.dumps(figures))
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass


def _write_atomically(path: Path, text: str) -> None:
    """Replace *path* with *text* at once (the demo's table never reads half a file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _load(port: int, seconds: float) -> tuple[int, int]:
    """POST orders from 32 concurrent clients for *seconds*; (accepted, refused)."""
    import httpx

    accepted = refused = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        # from here: making the client (its TLS context) took seconds on a busy machine
        deadline = time.monotonic() + seconds

        async def client_loop() -> None:
            nonlocal accepted, refused
            while time.monotonic() < deadline:
                response = await client.post("/orders")
                if response.status_code == 202:
                    accepted += 1
                else:
                    refused += 1

        await asyncio.gather(*(client_loop() for _ in range(32)))
    return accepted, refused


def _wait_for_workers(
    reports: list[Path], workers: list[subprocess.Popen[bytes]], limit: float = 60.0
) -> None:
    """Wait until every worker wrote its first report (it consumes from then on)."""
    deadline = time.monotonic() + limit
    while not all(path.exists() for path in reports):
        if any(worker.poll() is not None for worker in workers):
            raise SystemExit("a worker exited before it started consuming")
        if time.monotonic() > deadline:
            raise SystemExit(f"the workers did not start consuming within {limit:.0f} s")
        time.sleep(0.05)


def table(label: str, reports: list[Path], accepted: int, started: float) -> Any:
    """The live table: what each worker handled, and what the producer accepted."""
    from rich.table import Table

    table = Table(title=f"eventcore on {label} — {time.monotonic() - started:4.1f} s")
    for column in ("process", "handled", "share", "in flight", "queued", "broker pending"):
        table.add_column(column, justify="right")
    rows = [json.loads(path.read_text()) for path in reports if path.exists()]
    total = sum(row["handled"] for row in rows) or 1
    for row in rows:
        table.add_row(
            f"{row['worker']} (pid {row['pid']})",
            str(row["handled"]),
            f"{100 * row['handled'] / total:3.0f} %",
            str(row["in_flight"]),
            str(row["queued"]),
            "-" if row["pending"] is None else str(row["pending"]),
        )
    table.add_row("producer (FastAPI)", f"{accepted} accepted", "", "", "", "")
    return table


def demo(broker: Broker, seconds: float) -> None:
    """Run the server (if needed), two workers, the producer and the load."""
    from rich.live import Live

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as directory:
        store = Path(directory)
        url, server = broker.server(store / "server")
        env = {**os.environ, broker.url_variable: url, "EVENTCORE_DEMO_PREFIX": PREFIX}
        reports = [store / f"w{i}.json" for i in (1, 2)]
        try:
            for index, report in enumerate(reports, 1):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", broker.module, "worker", f"w{index}",
                         "--url", url, "--report", str(report)],
                        env=env,
                    )
                )  # fmt: skip
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", f"{broker.module}:app",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                    env=env,
                )
            )  # fmt: skip
            while not answers(port):
                time.sleep(0.05)
            # the load starts once both workers consume (each writes its report then)
            _wait_for_workers(reports, processes[:2])
            print(
                f"producer on http://127.0.0.1:{port}/orders; workers w1, w2; "
                f"{broker.label} at {url}"
            )
            started = time.monotonic()
            result: dict[str, tuple[int, int]] = {}

            def draw(accepted: int) -> Any:
                return table(broker.label, reports, accepted, started)

            async def run() -> None:
                load = asyncio.create_task(_load(port, seconds))
                with Live(draw(0), refresh_per_second=5) as live:
                    while not load.done():
                        live.update(draw(0))
                        await asyncio.sleep(0.2)
                    result["load"] = load.result()
                    # every accepted order is handled: wait for the workers to catch up
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        live.update(draw(result["load"][0]))
                        rows = [json.loads(p.read_text()) for p in reports if p.exists()]
                        if sum(r["handled"] for r in rows) >= result["load"][0]:
                            break
                        await asyncio.sleep(0.2)
                    live.update(draw(result["load"][0]))

            asyncio.run(run())
            if not sys.stdout.isatty():
                print()  # piped, rich ends the last table without a line break
            accepted, refused = result["load"]
            shares = [json.loads(p.read_text())["handled"] for p in reports if p.exists()]
            print(
                f"{accepted} orders accepted ({refused} refused with 503); handled by the "
                f"workers: {' + '.join(map(str, shares))} = {sum(shares)}"
            )
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(30)
            if server is not None:
                server.terminate()
                server.wait(10)
            broker.cleanup(url)


def main(broker: Broker, default_url: str) -> None:
    """``demo`` (the default) or ``worker NAME``."""
    parser = argparse.ArgumentParser(prog=f"python -m {broker.module}")
    parser.add_argument("role", nargs="?", default="demo", choices=["demo", "worker"])
    parser.add_argument("name", nargs="?", default="w1")
    parser.add_argument("--url", default=default_url)
    parser.add_argument("--report", default=None)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if args.role == "worker":
        report = Path(args.report or f"{args.name}.json")
        asyncio.run(work(broker, args.name, args.url, report))
    else:
        demo(broker, args.seconds)
