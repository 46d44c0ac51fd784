"""Scale-out on NATS JetStream: a FastAPI producer and two worker processes sharing the load.

``make demo-nats`` runs it (``python -m examples.nats_scaleout``): it uses the
NATS server on 127.0.0.1:4222, or starts a private ``nats-server -js`` on a free
port with a temporary store when none answers; starts two worker processes and
the FastAPI producer (uvicorn on 127.0.0.1); sends orders to ``POST /orders``
for a few seconds; and shows a live table of what each worker handled. Every
process uses the same ``NatsTransport(group="orders")``: the workers compete for
the events of one durable consumer, so each order is handled once, by one of them.

The roles run on their own too::

    python -m examples.nats_scaleout worker w1 --url nats://127.0.0.1:4222
    uvicorn examples.nats_scaleout:app     # with EVENTCORE_NATS_URL set
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from eventcore import Dispatcher
from eventcore.integrations.fastapi import DispatcherDep, add_backpressure_handlers, lifespan
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
PREFIX = os.environ.get("EVENTCORE_DEMO_PREFIX", "demo")


@event("demo.orders.placed")
@dataclass(frozen=True)
class OrderPlaced:
    """An order, as the producer publishes it."""

    order_id: int
    total: float


def transport(url: str = URL) -> NatsTransport:
    """The transport every process of the service uses: one group, so they share work."""
    return NatsTransport(url, group="orders", prefix=PREFIX, fetch_wait=0.2)


# -- the producer: a FastAPI app ------------------------------------------------------


def make_app() -> FastAPI:
    """The producer: ``POST /orders`` publishes an OrderPlaced (202 once JetStream has it)."""
    bus = Dispatcher(transport=transport())
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


app = make_app() if os.environ.get("EVENTCORE_NATS_URL") else None


# -- a worker -------------------------------------------------------------------------


async def work(name: str, url: str, report: Path) -> None:
    """Handle orders until SIGTERM; write this worker's figures to *report* 5 times a second."""
    bus = Dispatcher(transport=transport(url), queue_size=32, concurrency=8)

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


# -- the whole demo -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _nats(store: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """The machine's NATS on 4222, or a private one on a free port."""
    if URL == "nats://127.0.0.1:4222" and _answers(4222):
        return URL, None
    program = shutil.which("nats-server")
    if program is None:
        sys.exit("no NATS answers on 127.0.0.1:4222 and nats-server is not on PATH")
    port = _free_port()
    server = subprocess.Popen(
        [program, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not _answers(port):
        time.sleep(0.05)
    print(f"started a private nats-server on 127.0.0.1:{port}")
    return f"nats://127.0.0.1:{port}", server


async def _load(port: int, seconds: float) -> tuple[int, int]:
    """POST orders from 32 concurrent clients for *seconds*; (accepted, refused)."""
    import httpx

    accepted = refused = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

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


def _table(reports: list[Path], accepted: int, started: float) -> Any:
    from rich.table import Table

    table = Table(title=f"eventcore on NATS JetStream — {time.monotonic() - started:4.1f} s")
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


def demo(seconds: float) -> None:
    """Run the NATS server (if needed), two workers, the producer and the load."""
    from rich.live import Live

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as directory:
        store = Path(directory)
        url, server = _nats(store / "nats")
        env = {**os.environ, "EVENTCORE_NATS_URL": url, "EVENTCORE_DEMO_PREFIX": PREFIX}
        reports = [store / f"w{i}.json" for i in (1, 2)]
        try:
            for index, report in enumerate(reports, 1):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "examples.nats_scaleout", "worker", f"w{index}",
                         "--url", url, "--report", str(report)],
                        env=env,
                    )
                )  # fmt: skip
            port = _free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "examples.nats_scaleout:app",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                    env=env,
                )
            )  # fmt: skip
            while not _answers(port):
                time.sleep(0.05)
            print(f"producer on http://127.0.0.1:{port}/orders; workers w1, w2; NATS at {url}")
            started = time.monotonic()
            result: dict[str, tuple[int, int]] = {}

            async def run() -> None:
                load = asyncio.create_task(_load(port, seconds))
                with Live(_table(reports, 0, started), refresh_per_second=5) as live:
                    while not load.done():
                        live.update(_table(reports, 0, started))
                        await asyncio.sleep(0.2)
                    result["load"] = load.result()
                    # every accepted order is handled: wait for the workers to catch up
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        live.update(_table(reports, result["load"][0], started))
                        rows = [json.loads(p.read_text()) for p in reports if p.exists()]
                        if sum(r["handled"] for r in rows) >= result["load"][0]:
                            break
                        await asyncio.sleep(0.2)
                    live.update(_table(reports, result["load"][0], started))

            asyncio.run(run())
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
            _delete_streams(url)


def _delete_streams(url: str) -> None:
    async def delete() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(PREFIX + "_"):
                await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(delete())


def main() -> None:
    """``demo`` (the default) or ``worker NAME``."""
    parser = argparse.ArgumentParser(prog="python -m examples.nats_scaleout")
    parser.add_argument("role", nargs="?", default="demo", choices=["demo", "worker"])
    parser.add_argument("name", nargs="?", default="w1")
    parser.add_argument("--url", default=URL)
    parser.add_argument("--report", default=None)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if args.role == "worker":
        report = Path(args.report or f"{args.name}.json")
        asyncio.run(work(args.name, args.url, report))
    else:
        demo(args.seconds)


if __name__ == "__main__":
    main()
