"""FastAPI / Starlette integration, in process (httpx.ASGITransport), with eventcore.testing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventcore import Dispatcher, Grants, Overflow
from eventcore.integrations.fastapi import (
    DispatcherDep,
    add_backpressure_handlers,
    get_dispatcher,
    lifespan,
)
from eventcore.testing import capture
from examples import fastapi_app, orders

pytestmark = pytest.mark.asyncio


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_place_order_endpoint() -> None:
    """The example test of a FastAPI endpoint shown in README and eventcore.testing."""
    bus = Dispatcher(propagate_context=True)
    app = fastapi_app.create_app(bus, work_seconds=0)
    async with app.router.lifespan_context(app):  # starts the bus; drains it on exit
        with capture(bus) as events:
            async with client_for(app) as client:
                response = await client.post("/orders", json={"total": 12.5})
                assert response.status_code == 202
                order_id = response.json()["order_id"]
                await events.settle()  # the event and its follow-on were handled
                [placed] = events.assert_handled(orders.OrderPlaced, count=1)
                assert placed == orders.OrderPlaced(order_id, 12.5)
                events.assert_handled(orders.StockReserved, count=1)
                events.assert_no_failures()
                status = await client.get(f"/orders/{order_id}")
                assert status.json()["status"] == "confirmed"
    assert not bus.running


async def test_invalid_order_publishes_nothing() -> None:
    bus = Dispatcher()
    app = fastapi_app.create_app(bus, work_seconds=0)
    async with app.router.lifespan_context(app), client_for(app) as client:
        with capture(bus) as events:
            response = await client.post("/orders", json={"total": -1})
            assert response.status_code == 422
            events.assert_not_published(orders.OrderPlaced)


@dataclass(frozen=True)
class Ping:
    n: int


async def test_lifespan_composes_with_the_apps_own() -> None:
    bus = Dispatcher()
    seen: list[int] = []

    @bus.on(Ping)
    async def record(event: Ping) -> None:
        seen.append(event.n)

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await bus.publish(Ping(0))  # the dispatcher runs before the app's own startup
        yield {"greeting": "hi"}
        await bus.publish(Ping(2))  # and still at the app's own shutdown

    app = FastAPI(lifespan=lifespan(bus, own))

    @app.post("/ping")
    async def ping(bus: DispatcherDep) -> dict[str, bool]:
        return {"accepted": await bus.publish(Ping(1))}

    async with app.router.lifespan_context(app) as state, client_for(app) as client:
        assert state is not None
        assert state["greeting"] == "hi"
        assert (await client.post("/ping")).json() == {"accepted": True}
    assert seen == [0, 1, 2]  # drained at shutdown


async def test_plain_starlette_and_backpressure_503() -> None:
    bus = Dispatcher(queue_size=1, overflow=Overflow.RAISE)
    entered, gate = anyio.Event(), anyio.Event()

    @bus.on(Ping)
    async def slow(event: Ping) -> None:
        entered.set()
        await gate.wait()

    async def publish(request: Request) -> JSONResponse:
        await get_dispatcher(request).publish(Ping(1))
        return JSONResponse({"accepted": True}, status_code=202)

    app = Starlette(routes=[Route("/ping", publish, methods=["POST"])], lifespan=lifespan(bus))
    add_backpressure_handlers(app, retry_after=2.5)
    async with app.router.lifespan_context(app), client_for(app) as client:
        first = await client.post("/ping")
        assert first.status_code == 202
        await entered.wait()  # the only worker is busy with it
        second = await client.post("/ping")  # fills the queue
        assert second.status_code == 202
        busy = await client.post("/ping")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "3"
        assert busy.json() == {
            "detail": "the service is busy: retry later",
            "reason": "queue_full",
            "event_type": "Ping",
        }
        gate.set()
    assert bus.stats(Ping).handled == 2
    assert bus.stats(Ping).refused == 1


async def test_getter_without_lifespan_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(bus: DispatcherDep) -> None: ...

    with pytest.raises(RuntimeError, match="lifespan"):
        async with client_for(app) as client:
            await client.get("/")


async def test_unauthorized_publish_is_403() -> None:
    bus = Dispatcher(policy=Grants(publish={"admin": [Ping]}))
    app = FastAPI(lifespan=lifespan(bus))
    add_backpressure_handlers(app)

    @app.post("/ping")
    async def ping(bus: DispatcherDep, user: str) -> dict[str, bool]:
        return {"accepted": await bus.publish(Ping(1), principal=user)}

    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.post("/ping", params={"user": "admin"})).status_code == 200
        denied = await client.post("/ping", params={"user": "guest"})
    assert denied.status_code == 403
    assert "retry-after" not in denied.headers
    assert denied.json() == {
        "detail": "not allowed to publish Ping",
        "reason": "unauthorized",
        "event_type": "Ping",
    }
    assert bus.stats(Ping).accepted == 1


request_id: ContextVar[str] = ContextVar("request_id", default="-")


async def test_handlers_see_the_requests_contextvars_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Dispatcher()  # no propagate_context: the lifespan turns it on
    seen: list[str] = []

    @bus.on(Ping)
    async def record(event: Ping) -> None:
        seen.append(request_id.get())

    with caplog.at_level(logging.DEBUG, "eventcore"):
        app = FastAPI(lifespan=lifespan(bus))
    assert bus.propagate_context
    assert "propagate_context" in caplog.text

    @app.middleware("http")
    async def set_request_id(request: Request, call_next: Any) -> Any:
        request_id.set(request.headers["x-request-id"])
        return await call_next(request)

    @app.post("/ping")
    async def ping(bus: DispatcherDep) -> dict[str, bool]:
        return {"accepted": await bus.publish(Ping(1))}

    async with app.router.lifespan_context(app), client_for(app) as client:
        for rid in ("r1", "r2"):
            assert (await client.post("/ping", headers={"x-request-id": rid})).status_code == 200
    assert seen == ["r1", "r2"]


async def test_lifespan_can_leave_context_propagation_off() -> None:
    bus = Dispatcher()
    lifespan(bus, propagate_context=False)
    assert not bus.propagate_context


async def test_an_error_in_the_apps_own_lifespan_comes_out_as_itself() -> None:
    """Issue 10, item 2: a startup error inside the dispatcher's lifespan used to come
    out wrapped in an ExceptionGroup (``except KeyError`` did not catch it)."""

    def read_settings() -> None:
        raise KeyError("missing setting")

    @asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[None]:
        read_settings()
        yield  # pragma: no cover

    bus = Dispatcher()
    app = FastAPI(lifespan=lifespan(bus, own))
    with pytest.raises(KeyError, match="missing setting"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover
    assert not bus.running
