"""aiohttp integration, in process (aiohttp's TestServer/TestClient), with eventcore.testing."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eventcore import Dispatcher, Grants, Overflow
from eventcore.integrations.aiohttp import (
    DISPATCHER_KEY,
    backpressure_middleware,
    get_dispatcher,
    setup,
)
from eventcore.testing import capture
from examples import aiohttp_app, orders

pytestmark = pytest.mark.asyncio


async def test_place_order_endpoint() -> None:
    bus = Dispatcher(propagate_context=True)
    app = aiohttp_app.make_app(bus, work_seconds=0)
    assert app[DISPATCHER_KEY] is bus
    with capture(bus) as events:
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/orders", json={"total": 12.5})
            assert response.status == 202
            order_id = (await response.json())["order_id"]
            await events.settle()
            [placed] = events.assert_handled(orders.OrderPlaced, count=1)
            assert placed == orders.OrderPlaced(order_id, 12.5)
            events.assert_handled(orders.StockReserved, count=1)
            status = await client.get(f"/orders/{order_id}")
            assert (await status.json())["status"] == "confirmed"
            bad = await client.post("/orders", json={"total": 0})
            assert bad.status == 422
        events.assert_no_failures()
    assert not bus.running  # cleanup_ctx drained and closed it


@dataclass(frozen=True)
class Ping:
    n: int


async def test_backpressure_middleware_and_sub_app() -> None:
    bus = Dispatcher(queue_size=1, overflow=Overflow.RAISE)
    entered, gate = anyio.Event(), anyio.Event()

    @bus.on(Ping)
    async def slow(event: Ping) -> None:
        entered.set()
        await gate.wait()

    async def publish(request: web.Request) -> web.Response:
        await get_dispatcher(request).publish(Ping(1))  # found through the parent app
        return web.json_response({"accepted": True}, status=202)

    sub = web.Application(middlewares=[backpressure_middleware(retry_after=1)])
    sub.router.add_post("/ping", publish)
    app = web.Application()
    app.add_subapp("/api", sub)
    setup(app, bus)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/api/ping")).status == 202
        await entered.wait()  # the only worker is busy
        assert (await client.post("/api/ping")).status == 202  # fills the queue
        busy = await client.post("/api/ping")
        assert busy.status == 503
        assert busy.headers["Retry-After"] == "1"
        assert (await busy.json())["reason"] == "queue_full"
        gate.set()
    assert bus.stats(Ping).handled == 2


async def test_getter_without_setup_says_what_to_do() -> None:
    async def index(request: web.Request) -> web.Response:
        get_dispatcher(request)
        return web.Response()

    app = web.Application()
    app.router.add_get("/", index)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        assert response.status == 500


async def test_unauthorized_publish_is_403() -> None:
    bus = Dispatcher(policy=Grants(publish={"admin": [Ping]}))

    async def publish(request: web.Request) -> web.Response:
        await get_dispatcher(request).publish(Ping(1), principal=request.query["user"])
        return web.json_response({"accepted": True}, status=202)

    app = web.Application(middlewares=[backpressure_middleware()])
    app.router.add_post("/ping", publish)
    setup(app, bus)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/ping", params={"user": "admin"})).status == 202
        denied = await client.post("/ping", params={"user": "guest"})
        assert denied.status == 403
        assert "Retry-After" not in denied.headers
        assert await denied.json() == {
            "detail": "not allowed to publish Ping",
            "reason": "unauthorized",
            "event_type": "Ping",
        }
    assert bus.stats(Ping).accepted == 1
