"""The processes of the outbox crash checker (tests/outbox/test_checker.py).

``app``: writes orders, each with its ``OrderPlaced`` published in the same
transaction (``--mode outbox``), or published after the commit (``--mode dual``,
the dual write: a negative control), and runs a relay; at its ``--die-at``-th
order it SIGKILLs itself before or after the commit (``--die-where``).
``consumer``: charges each order through an idempotent handler (``--mode inbox``)
or a plain one (``--mode plain``, a negative control); at its ``--die-at``-th
event it SIGKILLs itself after its commit, before the acknowledgement.
Each process prints one line per self-kill (``died <where>``) before dying.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from eventcore import Dispatcher, Retry
from eventcore.outbox import Inbox, Outbox
from eventcore.transports.nats import NatsTransport

from .events import OrderPlaced


def die(where: str) -> None:
    print(f"died {where}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def transport(args: argparse.Namespace) -> NatsTransport:
    return NatsTransport(
        args.nats,
        group="billing",
        prefix=args.prefix,
        ack_wait=1.0,
        max_deliver=1000,
        fetch_wait=0.2,
    )


async def connect(dsn: str) -> Any:
    while True:
        try:
            return await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await anyio.sleep(0.1)


async def app(args: argparse.Namespace) -> None:
    bus = Dispatcher(transport=transport(args))
    bus.register(OrderPlaced)
    # the relay runs with the dispatcher; bus.publish(event, session=...) writes to the outbox
    Outbox(bus, relay=args.dsn, poll_interval=0.2, max_backoff=0.5, start_timeout=30)
    stop = Path(args.stop)
    async with bus:
        conn = await connect(args.dsn)
        written = 0
        while not stop.exists():  # noqa: ASYNC240 - one stat() per order, on purpose
            written += 1
            dies = written == args.die_at
            order = OrderPlaced(uuid.uuid4().hex, 1.0)
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO orders (id) VALUES ($1)", order.order_id)
                    if args.mode == "outbox":
                        await bus.publish(order, session=conn)
                    if dies and args.die_where == "before-commit":
                        die("before-commit")
                if dies and args.die_where == "after-commit":
                    die("after-commit")
                if args.mode == "dual":  # the dual write: lost if we die before this
                    await bus.publish(order)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                print(f"database error {type(exc).__name__}", flush=True)
                conn.terminate()
                conn = await connect(args.dsn)
            await anyio.sleep(args.pause)
        # stopped writing: relay until the outbox is empty (the checker waits for that)
        await anyio.sleep_forever()


async def consumer(args: argparse.Namespace) -> None:
    bus = Dispatcher(transport=transport(args))
    bus.configure(OrderPlaced, retry=Retry(attempts=1000, backoff=0.05, max_backoff=0.5))
    pool = await asyncpg.create_pool(args.dsn, min_size=0, max_size=4)
    inbox = Inbox(pool)

    @inbox.idempotent(name="billing.charge")
    async def charge(event: OrderPlaced, conn: Any) -> None:
        await conn.execute("INSERT INTO charges (order_id) VALUES ($1)", event.order_id)

    async def plain(event: OrderPlaced) -> None:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO charges (order_id) VALUES ($1)", event.order_id)

    handled = 0

    @bus.on(OrderPlaced)
    async def handle(event: OrderPlaced) -> None:
        nonlocal handled
        await (charge(event) if args.mode == "inbox" else plain(event))
        handled += 1
        if handled == args.die_at:  # committed; the ack is sent after the handler returns
            die("after-commit-before-ack")

    async with bus:
        print("ready", flush=True)
        await anyio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("app", "consumer"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--mode", default="outbox")
    parser.add_argument("--stop", default="")
    parser.add_argument("--pause", type=float, default=0.002)
    parser.add_argument("--prefix", default="checker")
    parser.add_argument("--die-at", type=int, default=0, help="SIGKILL itself at this event")
    parser.add_argument("--die-where", default="after-commit", help="the app's point")
    args = parser.parse_args()
    anyio.run(app if args.role == "app" else consumer, args)
    sys.exit(0)


if __name__ == "__main__":
    main()
