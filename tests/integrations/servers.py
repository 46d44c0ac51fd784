"""Real servers on 127.0.0.1 for the integration tests, run in the test's own event loop.

The listening socket is bound (port 0) and listening before the server starts, so
clients may connect at once: the kernel queues them until the server accepts.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from aiohttp import web


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free loopback port."""
    return socket.create_server(("127.0.0.1", 0), backlog=1024)


def url_of(sock: socket.socket) -> str:
    """The base URL of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@asynccontextmanager
async def serve_uvicorn(app: Any) -> AsyncIterator[str]:
    """Run *app* (ASGI) with uvicorn, lifespan included; leaving stops the server
    gracefully (finishes requests, then runs the lifespan shutdown)."""
    sock = listening_socket()
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, log_level="warning", access_log=False, ws="none"
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield url_of(sock)
        finally:
            server.should_exit = True


@asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Run *app* with aiohttp's web server; leaving runs the app's shutdown and cleanup."""
    sock = listening_socket()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        yield url_of(sock)
    finally:
        await runner.cleanup()
