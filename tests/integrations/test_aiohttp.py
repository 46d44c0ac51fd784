"""aiohttp integration, in process (aiohttp's TestServer/TestClient), with eventcore.testing."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

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


request_id: ContextVar[str] = ContextVar("request_id", default="-")


async def test_handlers_see_the_requests_contextvars_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Dispatcher()  # no propagate_context: setup turns it on
    seen: list[str] = []

    @bus.on(Ping)
    async def record(event: Ping) -> None:
        seen.append(request_id.get())

    @web.middleware
    async def set_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id.set(request.headers["X-Request-Id"])
        return await handler(request)

    async def publish(request: web.Request) -> web.Response:
        await get_dispatcher(request).publish(Ping(1))
        return web.json_response({"accepted": True}, status=202)

    app = web.Application(middlewares=[set_request_id])
    app.router.add_post("/ping", publish)
    with caplog.at_level(logging.DEBUG, "eventcore"):
        setup(app, bus)
    assert bus.propagate_context
    assert "propagate_context" in caplog.text
    async with TestClient(TestServer(app)) as client:
        for rid in ("r1", "r2"):
            assert (await client.post("/ping", headers={"X-Request-Id": rid})).status == 202
    assert seen == ["r1", "r2"]


async def test_setup_can_leave_context_propagation_off() -> None:
    bus = Dispatcher()
    setup(web.Application(), bus, propagate_context=False)
    assert not bus.propagate_context
