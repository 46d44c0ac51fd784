"""Requests the fuzzer (``fuzz/``) found that crashed the dashboard, each answered now.

The small server (``eventcore.dashboard.serve``) stopped altogether on a bad
``Content-Length`` or request target (the exception left its listener), and an
action body nested too deep escaped the handler as a ``RecursionError``.
"""

from __future__ import annotations

import anyio
import pytest

from eventcore import Dispatcher
from eventcore.dashboard import Dashboard
from eventcore.dashboard._core import Request
from eventcore.dashboard._http import Reply, handle
from eventcore.dashboard.serve import serve

pytestmark = pytest.mark.anyio


async def exchange(port: int, raw: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(raw)
        answer = b""
        try:
            while True:
                answer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return answer


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", b"413"),
        (b"GET //[x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"400"),
    ],
    ids=["letters", "negative", "5000-digits", "bad-target"],
)
async def test_a_malformed_request_is_refused_and_the_server_goes_on(
    head: bytes, status: bytes
) -> None:
    bus = Dispatcher()
    dashboard = Dashboard(bus)
    with anyio.fail_after(20):
        async with bus, dashboard, anyio.create_task_group() as tg:
            url = await tg.start(serve, dashboard, "127.0.0.1", 0)
            port = int(url.rstrip("/").rpartition(":")[2])
            refused = await exchange(port, head)
            assert refused.startswith(b"HTTP/1.1 " + status + b" "), refused[:80]
            good = b"GET /snapshot.json HTTP/1.1\r\nHost: localhost\r\n\r\n"
            served = await exchange(port, good)
            assert served.startswith(b"HTTP/1.1 200 "), served[:80]
            tg.cancel_scope.cancel()


async def test_an_action_body_nested_too_deep_is_a_400() -> None:
    bus = Dispatcher()
    dashboard = Dashboard(bus, allow_actions=True)
    async with bus, dashboard:
        headers = {
            "host": "127.0.0.1:8089",
            "origin": "http://127.0.0.1:8089",
            "x-csrf-token": dashboard.csrf_token,
            "content-type": "application/json",
        }
        request = Request("POST", "/action", headers, "127.0.0.1", b"[" * 16000)
        answer = await handle(dashboard, request)
    assert isinstance(answer, Reply)
    assert answer.status == 400
    assert b'{"action": ..., "target": ...}' in answer.body
