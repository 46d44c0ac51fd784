"""Effectively once: FastAPI writes an order and publishes ``OrderPlaced`` in one
transaction (the outbox); a worker process charges each order exactly once (the inbox).

Run it (PostgreSQL and NATS with JetStream on loopback, or set EVENTCORE_PG_DSN and
EVENTCORE_NATS_URL)::

    python -m examples.outbox_fastapi

It creates its tables, starts a worker process and the app (uvicorn on 127.0.0.1),
places orders through ``POST /orders`` (one of them fails inside its transaction,
so its event never leaves), kills the worker once right after a charge committed
(before its acknowledgement, so NATS redelivers that event), and prints the orders
and charges: one charge per committed order. The roles run on their own too::

    python -m examples.outbox_fastapi worker
    uvicorn examples.outbox_fastapi:app
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import Numeric, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from eventcore import Dispatcher
from eventcore.integrations.fastapi import lifespan
from eventcore.outbox import Inbox, Outbox, Tables, metadata
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

DSN = os.environ.get("EVENTCORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")
TABLES = Tables(outbox="example_outbox", inbox="example_inbox", dead="example_outbox_dead")

engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://"))
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_orders"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    total: Mapped[float] = mapped_column(Numeric(10, 2))


class Charge(Base):  # the worker's own table; no unique key, so a double charge would show
    __tablename__ = "example_charges"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String)
    amount: Mapped[float] = mapped_column(Numeric(10, 2))


@event("example.orders.placed")
@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: float


def transport() -> NatsTransport:
    return NatsTransport(NATS, group="billing", prefix="example", ack_wait=2.0, fetch_wait=0.2)


# -- the app: the order and its event commit together ---------------------------------

bus = Dispatcher(transport=transport())
bus.register(OrderPlaced)
Outbox(bus, tables=TABLES, relay=DSN)  # its relay sends committed events while bus runs


async def session() -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed after the endpoint returns."""
    async with Session() as s, s.begin():
        yield s


SessionDep = Annotated[AsyncSession, Depends(session)]
app = FastAPI(lifespan=lifespan(bus))


@app.post("/orders")
async def place_order(order_id: str, total: float, session: SessionDep) -> dict[str, str]:
    session.add(Order(id=order_id, total=total))
    await bus.publish(OrderPlaced(order_id, total), session=session)  # in the transaction
    if total < 0:  # raises inside the transaction: the order and its event roll back
        raise HTTPException(422, "a total must not be negative")
    return {"order_id": order_id}


# -- the worker: effects and inbox row commit together --------------------------------


async def work() -> None:
    worker = Dispatcher(transport=transport())
    inbox = Inbox(Session, tables=TABLES)
    die_after = int(os.environ.get("EXAMPLE_DIE_AFTER", "0"))
    charged = 0

    @inbox.idempotent(name="billing.charge")
    async def charge(event: OrderPlaced, session: AsyncSession) -> None:
        session.add(Charge(order_id=event.order_id, amount=event.total))

    @worker.on(OrderPlaced)
    async def on_order(event: OrderPlaced) -> None:
        nonlocal charged
        duplicates = inbox.stats().duplicates
        await charge(event)  # committed here, with its inbox row
        if inbox.stats().duplicates > duplicates:
            print(f"worker: {event.order_id} delivered again: already charged, acked", flush=True)
            return
        charged += 1
        if charged == die_after:  # a crash before the ack: NATS will deliver it again
            print(f"worker: charged {event.order_id}, dying before the ack", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    async with worker:
        print("worker: ready", flush=True)
        await asyncio.Event().wait()


# -- the whole run ----------------------------------------------------------------------


def spawn_worker(die_after: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EXAMPLE_DIE_AFTER": str(die_after)}
    return subprocess.Popen([sys.executable, "-m", "examples.outbox_fastapi", "worker"], env=env)


async def counts() -> tuple[int, int, int]:
    async with Session() as s:
        orders = await s.scalar(select(func.count()).select_from(Order))
        charges = await s.scalar(select(func.count()).select_from(Charge))
        charged = await s.scalar(select(func.count(func.distinct(Charge.order_id))))
    return int(orders or 0), int(charges or 0), int(charged or 0)


async def delete_streams() -> None:
    """Remove the example's streams (left by an earlier run) from NATS."""
    import nats

    nc = await nats.connect(NATS)
    js = nc.jetstream()
    for info in await js.streams_info():
        name = info.config.name or ""
        if name.startswith("example_"):
            await js.delete_stream(name)
    await nc.close()


async def demo() -> None:
    await delete_streams()
    async with engine.begin() as conn:  # the example's tables, fresh
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(metadata(TABLES).drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(metadata(TABLES).create_all)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    worker = spawn_worker(die_after=3)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for n, total in enumerate([10.0, 20.0, -1.0, 30.0, 40.0, 50.0]):
                reply = await client.post("/orders", params={"order_id": f"A{n}", "total": total})
                print(f"POST /orders A{n} total={total}: {reply.status_code}")
        for _ in range(300):
            if worker.poll() is not None:  # it died after a commit: start another
                worker = spawn_worker(die_after=0)
            orders, charges, charged = await counts()
            if charged == orders and orders:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a double charge would show meanwhile
        orders, charges, charged = await counts()
        print(f"orders committed: {orders}, charges: {charges}, orders charged: {charged}")
    finally:
        worker.kill()
        worker.wait()
        server.should_exit = True
        await serving
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(work() if sys.argv[1:] == ["worker"] else demo())
