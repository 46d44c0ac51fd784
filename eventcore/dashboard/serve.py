"""A small HTTP/1.1 server for the dashboard alone, on anyio (asyncio, uvloop, trio).

For a service without a web framework, and for ``eventcore demo``::

    async with bus, dashboard, anyio.create_task_group() as tg:
        url = await tg.start(serve, dashboard, "127.0.0.1", 8089)
        print("dashboard:", url)

One request per connection (``Connection: close``); no TLS: keep it on loopback,
or put it behind a proxy with ``auth=`` (see ``eventcore.dashboard``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

from ._core import Dashboard, Request
from ._http import MAX_BODY, Reply, _text, handle

__all__ = ["serve"]

_REASONS = {200: "OK", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 415: "Unsupported Media Type", 409: "Conflict",
            503: "Service Unavailable"}  # fmt: skip
_MAX_HEAD = 16 * 1024


async def serve(
    dashboard: Dashboard,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *dashboard* at ``http://host:port/`` until cancelled.

    Started with ``await task_group.start(serve, dashboard, host, port)``, it hands
    back its URL once it listens (with ``port=0``, a free port is chosen).
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_address)
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        task_status.started(f"http://{shown}:{bound[1]}/")
        await listener.serve(lambda stream: _connection(dashboard, stream))


async def _connection(dashboard: Dashboard, stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            await _exchange(dashboard, stream)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass  # the client went away


async def _exchange(dashboard: Dashboard, stream: anyio.abc.SocketStream) -> None:
    data = b""
    with anyio.move_on_after(10):
        while b"\r\n\r\n" not in data and len(data) <= _MAX_HEAD:
            data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _ = lines[0].split(" ", 2)
    except ValueError:
        await _send(stream, _text(400, "a bad request line"))
        return
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "0") or "0"
    if not (length.isascii() and length.isdigit()):
        await _send(stream, _text(400, f"a bad Content-Length: {length[:40]!r}"))
        return
    size = int(length) if len(length) <= 12 else MAX_BODY + 1  # digits: never negative
    if size > MAX_BODY:
        await _send(stream, _text(413, "the body is too large"))
        return
    with anyio.move_on_after(10):
        while len(body) < size:
            body += await stream.receive()
    client = stream.extra(anyio.abc.SocketAttribute.remote_address)
    try:
        path = unquote(urlsplit(target).path) or "/"
    except ValueError:  # e.g. a bracket that opens no IPv6 address: //[x
        await _send(stream, _text(400, "a bad request target"))
        return
    request = Request(method.upper(), path, headers, str(client[0]), body[:size])
    answer = await handle(dashboard, request)
    if isinstance(answer, Reply):
        await _send(stream, answer)
        return
    try:
        await stream.send(_start(answer.status, answer.headers))
        async for chunk in answer.body:
            await stream.send(chunk)
    finally:
        answer.release()
        with anyio.CancelScope(shield=True):
            await answer.body.aclose()  # type: ignore[attr-defined]


def _start(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(stream: anyio.abc.SocketStream, reply: Reply) -> None:
    headers = [*reply.headers, ("content-length", str(len(reply.body)))]
    await stream.send(_start(reply.status, headers) + reply.body)
