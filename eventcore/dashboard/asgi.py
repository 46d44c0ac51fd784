"""The dashboard as an ASGI app: mount it in FastAPI or Starlette, or serve it alone.

::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from eventcore.dashboard import Dashboard
    from eventcore.dashboard.asgi import DashboardApp

    dashboard = Dashboard(bus)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with bus, dashboard:
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/dashboard", DashboardApp(dashboard))

Plain ASGI, no framework needed: served alone (``uvicorn module:app``) the app
runs the dashboard's life from the ``lifespan`` messages itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from ._core import Dashboard, Request
from ._http import MAX_BODY, Reply, Stream, _text, handle

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["DashboardApp"]


class DashboardApp:
    """An ASGI application serving *dashboard* (see the module doc)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: ``http`` and ``lifespan`` scopes."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: nothing here
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        route = path[len(root) :] if root and path.startswith(root) else path
        client = scope.get("client")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body: bytes | None = b""
        if scope["method"] == "POST":
            body = await _read_body(receive)
        if body is None:
            await _send_reply(send, _text(413, "the body is too large"))
            return
        request = Request(scope["method"], route, headers, client[0] if client else None, body)
        mount_name = path.rstrip("/").rpartition("/")[2]
        answer = await handle(self.dashboard, request, mount_name)
        if isinstance(answer, Reply):
            await _send_reply(send, answer, head=scope["method"] == "HEAD")
        else:
            await _send_stream(send, receive, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Served alone: start the dashboard at startup, stop it at shutdown."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await self.dashboard.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        try:
            await receive()  # lifespan.shutdown
        finally:
            await self.dashboard.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_reply(send: Send, reply: Reply, head: bool = False) -> None:
    headers = [*reply.headers, ("content-length", str(len(reply.body)))]
    await send({"type": "http.response.start", "status": reply.status, "headers": _raw(headers)})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


async def _send_stream(send: Send, receive: Receive, stream: Stream) -> None:
    """Send the event stream until the client goes or the dashboard stops."""
    try:
        start = {"type": "http.response.start", "status": stream.status}
        await send({**start, "headers": _raw(stream.headers)})
        async with anyio.create_task_group() as task_group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                task_group.cancel_scope.cancel()

            task_group.start_soon(watch)
            async for chunk in stream.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            task_group.cancel_scope.cancel()
    except OSError:
        pass  # the client went away while we wrote
    finally:
        stream.release()
        aclose = getattr(stream.body, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()
