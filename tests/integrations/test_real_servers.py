"""The example apps on real servers (uvicorn, aiohttp) under hundreds of concurrent requests.

Each test runs the server in the test's event loop on a free loopback port and
drives it over real sockets: with httpx against uvicorn and with aiohttp's client
against aiohttp's server. They check that every accepted event was handled, that
overload gives 503 + Retry-After rather than lost events, and that stopping the
server drains the dispatcher. Handlers are held on an ``anyio.Event`` where a
test needs the queue to stay full; no test sleeps or times anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import httpx
import pytest

from eventcore import Dispatcher, Lifecycle
from eventcore.testing import capture
from examples import aiohttp_app, fastapi_app
from examples.orders import OrderPlaced, StockReserved

from .servers import serve_aiohttp, serve_uvicorn

pytestmark = pytest.mark.asyncio

CONNECTIONS = 64


@dataclass
class Reply:
    """One HTTP response, whichever client got it."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stack:
    """One framework: how to build its example app, serve it, and talk to it."""

    name: str
    make: Callable[..., Any]
    serve: Callable[[Any], AbstractAsyncContextManager[str]]
    client: Callable[[str], AbstractAsyncContextManager[Client]]
    #: the example module's event classes
    placed: type[Any]
    reserved: type[Any]
    #: how many requests each test sends (httpx is the slowest part here)
    requests: int


class Client:
    """The few calls the tests make, over httpx or aiohttp."""

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    async def get(self, path: str) -> Reply:
        raise NotImplementedError

    async def get_text(self, path: str) -> str:
        raise NotImplementedError


class HttpxClient(Client):
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        r = await self._client.post(path, json=body)
        return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.json())

    async def get(self, path: str) -> Reply:
        r = await self._client.get(path)
        return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.json())

    async def get_text(self, path: str) -> str:
        r = await self._client.get(path)
        assert r.status_code == 200
        return r.text


class AiohttpClient(Client):
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        async with self._session.post(path, json=body) as r:
            return Reply(
                r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(await r.text())
            )

    async def get(self, path: str) -> Reply:
        async with self._session.get(path) as r:
            return Reply(
                r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(await r.text())
            )

    async def get_text(self, path: str) -> str:
        async with self._session.get(path) as r:
            assert r.status == 200
            return await r.text()


def httpx_client(url: str) -> AbstractAsyncContextManager[Client]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_client() -> AsyncIterator[Client]:
        limits = httpx.Limits(max_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            yield HttpxClient(client)

    return open_client()


def aiohttp_client(url: str) -> AbstractAsyncContextManager[Client]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def open_client() -> AsyncIterator[Client]:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
            yield AiohttpClient(session)

    return open_client()


STACKS = [
    pytest.param(
        Stack(
            "fastapi+uvicorn",
            fastapi_app.create_app,
            serve_uvicorn,
            httpx_client,
            OrderPlaced,
            StockReserved,
            requests=200,
        ),
        id="uvicorn-httpx",
    ),
    pytest.param(
        Stack(
            "aiohttp",
            aiohttp_app.make_app,
            serve_aiohttp,
            aiohttp_client,
            OrderPlaced,
            StockReserved,
            requests=400,
        ),
        id="aiohttp-aiohttp",
    ),
]


async def post_all(client: Client, bodies: list[dict[str, Any]]) -> list[Reply]:
    """POST every body to /orders at once (the client's pool bounds the connections)."""
    replies: list[Reply | None] = [None] * len(bodies)

    async def one(i: int) -> None:
        replies[i] = await client.post("/orders", bodies[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(bodies)):
            tg.start_soon(one, i)
    assert all(r is not None for r in replies)
    return [r for r in replies if r is not None]


def orders(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"order_id": f"{prefix}{i}", "total": 1.0 + i} for i in range(n)]


def report(name: str, **numbers: object) -> None:
    """Print the measured numbers (shown with pytest -s, or -rP)."""
    print(f"[{name}] " + " ".join(f"{k}={v}" for k, v in numbers.items()), file=sys.stderr)


@pytest.mark.parametrize("stack", STACKS)
async def test_every_accepted_order_is_handled(stack: Stack) -> None:
    bus = Dispatcher(propagate_context=True)
    app = stack.make(bus, queue_size=1000, concurrency=8, publish_timeout=30, work_seconds=0)
    with capture(bus) as events:
        async with stack.serve(app) as url, stack.client(url) as client:
            replies = await post_all(client, orders(stack.requests, "o"))
            assert [r.status for r in replies] == [202] * stack.requests
            await events.settle()
            stats = (await client.get("/stats")).body
            metrics = await client.get_text("/metrics")
    report(stack.name, requests=stack.requests, accepted=stats["OrderPlaced"]["accepted"])
    assert stats["OrderPlaced"]["accepted"] == stats["OrderPlaced"]["handled"] == stack.requests
    assert stats["StockReserved"]["handled"] == stack.requests  # the follow-on events too
    handled = events.assert_handled(stack.placed, count=stack.requests)
    assert {e.order_id for e in handled} == {f"o{i}" for i in range(stack.requests)}
    events.assert_handled(stack.reserved, count=stack.requests)
    events.assert_no_failures()
    assert (
        f'eventcore_events_handled_total{{event_type="OrderPlaced"}} {stack.requests}.0' in metrics
    )
    assert not bus.running


@pytest.mark.parametrize("stack", STACKS)
async def test_overload_gives_503_and_loses_nothing(stack: Stack) -> None:
    queue_size, concurrency = 20, 2
    bus = Dispatcher(propagate_context=True)
    app = stack.make(
        bus, queue_size=queue_size, concurrency=concurrency, publish_timeout=0.05, work_seconds=0
    )
    gate = anyio.Event()  # handlers hold here: the queue fills and stays full

    async def hold(event: object) -> None:
        await gate.wait()

    bus.subscribe(stack.placed, hold)
    with capture(bus) as events:
        async with stack.serve(app) as url, stack.client(url) as client:
            replies = await post_all(client, orders(stack.requests, "o"))
            full = bus.stats(stack.placed)
            gate.set()
            await events.settle()
            stats = (await client.get("/stats")).body["OrderPlaced"]
    ok = [r for r in replies if r.status == 202]
    busy = [r for r in replies if r.status == 503]
    report(stack.name, requests=stack.requests, accepted=len(ok), rejected_503=len(busy),
           handled=stats["handled"])  # fmt: skip
    assert len(ok) + len(busy) == stack.requests
    # The queue held queue_size events and `concurrency` more were being handled.
    assert full.queued == queue_size
    assert full.in_flight == concurrency
    assert len(ok) == queue_size + concurrency == stats["accepted"] == stats["handled"]
    assert len(busy) == stats["refused"] > 0
    assert all(r.headers.get("retry-after") == "1" for r in busy)
    assert {r.body["reason"] for r in busy} == {"publish_timeout"}
    # Every 202 was handled; no 503'd order reached a handler.
    handled = {e.order_id for e in events.assert_handled(stack.placed, count=len(ok))}
    assert handled == {r.body["order_id"] for r in ok}
    assert stats["abandoned"] == 0


@pytest.mark.parametrize("stack", STACKS)
async def test_stopping_the_server_drains_the_dispatcher(stack: Stack) -> None:
    gate = anyio.Event()
    pending_at_shutdown: list[int] = []
    bus: Dispatcher

    def on_lifecycle(phase: Lifecycle) -> None:
        if phase is Lifecycle.DRAINING:  # the server is stopping: let the handlers go
            s = bus.stats(stack.placed)
            pending_at_shutdown.append(s.queued + s.in_flight)
            gate.set()

    bus = Dispatcher(propagate_context=True, on_lifecycle=on_lifecycle, shutdown_timeout=60)
    app = stack.make(bus, queue_size=1000, concurrency=4, publish_timeout=30, work_seconds=0)

    async def hold(event: object) -> None:
        await gate.wait()

    bus.subscribe(stack.placed, hold)
    n = stack.requests // 2
    with capture(bus) as events:
        async with stack.serve(app) as url, stack.client(url) as client:
            replies = await post_all(client, orders(n, "s"))
            assert [r.status for r in replies] == [202] * n
        # The server has stopped: its shutdown drained the dispatcher.
    stats = bus.stats(stack.placed)
    report(stack.name, accepted=n, pending_at_shutdown=pending_at_shutdown[0],
           handled_after_shutdown=stats.handled)  # fmt: skip
    assert pending_at_shutdown == [n]
    assert not bus.running
    assert stats.handled == stats.accepted == n
    assert stats.abandoned == 0
    assert bus.stats(stack.reserved).handled == n
    events.assert_handled(stack.placed, count=n)
    events.assert_no_failures()
