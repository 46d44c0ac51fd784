"""The dashboard behind real servers on 127.0.0.1: aiohttp's sub-application and the
ASGI app under uvicorn (in a FastAPI app, mounted under a prefix)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx
import pytest
from aiohttp import web

from eventcore import Dispatcher
from eventcore.dashboard import Dashboard
from eventcore.dashboard.aiohttp import setup as setup_dashboard
from eventcore.dashboard.asgi import DashboardApp
from tests.integrations.servers import serve_aiohttp, serve_uvicorn

pytestmark = pytest.mark.asyncio


@dataclass(frozen=True)
class Beat:
    n: int


def tid() -> str:
    return f"{Beat.__module__}.{Beat.__qualname__}"


def make_bus() -> Dispatcher:
    bus = Dispatcher()

    @bus.on(Beat)
    async def handler(event: Beat) -> None:
        pass

    return bus


async def first_events(http: httpx.AsyncClient, url: str, count: int) -> list[str]:
    kinds: list[str] = []
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
            if len(kinds) >= count:
                break
    return kinds


async def check_served(base: str, bus: Dispatcher, dashboard: Dashboard) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        moved = await http.get("/dashboard")
        assert moved.status_code in (301, 307, 308)
        page = await http.get("/dashboard/")
        assert page.status_code == 200
        assert "eventcore dashboard" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        await bus.publish(Beat(1))
        await bus.drain()
        snapshot = (await http.get("/dashboard/snapshot.json")).json()
        assert snapshot["sample"]["types"][tid()]["handled"] == 1
        assert await first_events(http, "/dashboard/events", 2) == ["hello", "sample"]
        with anyio.fail_after(10):  # the server notices the client left: no viewer leaks
            while dashboard.viewers:
                await dashboard.next_sample()  # the next tick
        headers = {"origin": base, "x-csrf-token": dashboard.csrf_token}
        body = {"action": "pause", "target": tid()}
        paused = await http.post("/dashboard/action", json=body, headers=headers)
        assert paused.json() == {"ok": True, "paused": True}
        foreign = await http.post(
            "/dashboard/action", json=body, headers={**headers, "origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
    assert bus.paused(Beat)


async def test_the_aiohttp_sub_application() -> None:
    bus = make_bus()
    dashboard = Dashboard(bus, allow_actions=True, interval=0.05)

    async def run_bus(app: web.Application) -> AsyncIterator[None]:
        async with bus:
            yield

    app = web.Application()
    app.cleanup_ctx.append(run_bus)
    setup_dashboard(app, dashboard)
    async with serve_aiohttp(app) as base:
        assert dashboard.started
        await check_served(base, bus, dashboard)
    assert not dashboard.started


async def test_the_asgi_app_mounted_in_fastapi_under_uvicorn() -> None:
    from fastapi import FastAPI

    bus = make_bus()
    dashboard = Dashboard(bus, allow_actions=True, interval=0.05, max_stream=1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bus, dashboard:
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/dashboard", DashboardApp(dashboard))
    async with serve_uvicorn(app) as base:
        await check_served(base, bus, dashboard)
