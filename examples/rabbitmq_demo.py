"""Scale-out on RabbitMQ: one publisher, two worker processes of one service.

``make demo-rabbitmq`` runs it (``python -m examples.rabbitmq_demo``) against the
RabbitMQ at ``EVENTCORE_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``).
It starts two worker processes, publishes orders for a few seconds, and prints what
each worker handled:

* ``demo.shop.order`` (no key): both workers consume the group's one quorum queue
  and share the orders;
* ``demo.shop.payment`` (keyed by customer, 4 partitions): each partition queue
  has a single active consumer, so all payments of one customer go to one worker,
  in order (each partition stays with the worker that subscribed to it first; the
  other waits on it as a standby, and takes over when the first one stops).

Everything runs under a prefix of its own, deleted at the end. A worker alone::

    python -m examples.rabbitmq_demo worker w1 --prefix demo
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiormq

from eventcore import Dispatcher
from eventcore.transports.rabbitmq import RabbitMQTransport
from eventcore.wire import event

URL = os.environ.get("EVENTCORE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent


@event("demo.shop.order")
@dataclass(frozen=True)
class Order:
    """An order: any worker may take it."""

    number: int


@event("demo.shop.payment")
@dataclass(frozen=True)
class Payment:
    """A payment: those of one customer are handled in order, by one worker."""

    customer: str
    number: int


def service(prefix: str) -> Dispatcher:
    """The dispatcher every process of the shop service builds."""
    transport = RabbitMQTransport(URL, group="shop", prefix=prefix, partitions=4)
    bus = Dispatcher(transport=transport, queue_size=64, concurrency=8)
    bus.configure(Payment, key=lambda payment: payment.customer)
    return bus


async def work(name: str, prefix: str) -> None:
    """A worker: handle until SIGTERM; print one JSON line of what it handled."""
    bus = service(prefix)
    orders: Counter[str] = Counter()
    payments: dict[str, list[int]] = {}

    @bus.on(Order)
    async def pack(order: Order) -> None:
        orders[name] += 1
        await asyncio.sleep(0.002)  # some work

    @bus.on(Payment)
    async def book(payment: Payment) -> None:
        payments.setdefault(payment.customer, []).append(payment.number)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        print("ready", flush=True)
        await stop.wait()
    in_order = all(numbers == sorted(numbers) for numbers in payments.values())
    report = {"orders": orders[name], "customers": sorted(payments), "in_order": in_order}
    print(json.dumps(report), flush=True)


async def publish(prefix: str, seconds: float) -> tuple[int, int, list[str]]:
    """Publish orders and payments for *seconds*; how many of each, and the queues
    (once the workers emptied them)."""
    orders = payments = 0
    async with service(prefix) as bus:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await bus.publish(Order(orders))
            orders += 1
            if orders % 4 == 0:
                await bus.publish(Payment(f"customer-{payments % 5}", payments))
                payments += 1
        transport: RabbitMQTransport = bus.transport_of(Order)
    queues = transport.declared()
    connection = await aiormq.connect(URL)
    channel = await connection.channel()
    for _ in range(100):  # until the workers took everything (10 s at most)
        counts = [(await channel.queue_declare(q, passive=True)).message_count for q in queues]
        if not any(counts):
            break
        await asyncio.sleep(0.1)
    await connection.close()
    return orders, payments, queues


async def tidy_up(prefix: str, queues: list[str]) -> None:
    """Delete the demo's queues and exchanges."""
    connection = await aiormq.connect(URL)
    channel = await connection.channel()
    for queue in queues:
        await channel.queue_delete(queue)
    for exchange in (prefix, f"{prefix}.dead"):
        await channel.exchange_delete(exchange)
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.rabbitmq_demo")
    parser.add_argument("role", nargs="?", default="demo", choices=["demo", "worker"])
    parser.add_argument("name", nargs="?", default="w1")
    parser.add_argument("--prefix", default=f"demo-{os.getpid()}")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(work(args.name, args.prefix))
        return
    command = [sys.executable, "-m", "examples.rabbitmq_demo", "worker"]
    workers = {
        name: subprocess.Popen(
            [*command, name, "--prefix", args.prefix], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for name in ("w1", "w2")
    }
    try:
        for process in workers.values():
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                sys.exit(f"a worker did not start: is RabbitMQ running at {URL}?")
        print(f"publishing for {args.seconds} s to RabbitMQ, two workers of group 'shop'...")
        orders, payments, queues = asyncio.run(publish(args.prefix, args.seconds))
    finally:
        for process in workers.values():
            process.send_signal(signal.SIGTERM)
    reports = {}
    for name, process in workers.items():
        out, _ = process.communicate(timeout=30)
        reports[name] = json.loads(out.strip().splitlines()[-1])
    asyncio.run(tidy_up(args.prefix, queues))
    print(f"published {orders} orders and {payments} payments of 5 customers")
    for name, report in reports.items():
        print(
            f"  {name}: {report['orders']:5} orders, payments of {len(report['customers'])} "
            f"customers, each in order: {report['in_order']}"
        )


if __name__ == "__main__":
    main()
