"""The dashboard's own small server (asyncio, uvloop, trio), ``eventcore top`` against
it, and the demo serving the dashboard while it runs."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from eventcore import Dispatcher
from eventcore.__main__ import main
from eventcore._demo import run_demo
from eventcore.dashboard import Dashboard, basic_auth
from eventcore.dashboard.serve import serve
from eventcore.dashboard.top import auth_headers, ordered, parse_events, run_top, with_rates

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Work:
    n: int


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[tuple[str, Dispatcher, Dashboard]]:
    bus = Dispatcher(queue_size=16)

    @bus.on(Work)
    async def handler(event: Work) -> None:
        pass

    dashboard = Dashboard(bus, interval=0.02, **settings)
    async with bus, dashboard, anyio.create_task_group() as tg:
        url = await tg.start(serve, dashboard, "127.0.0.1", 0)
        for n in range(20):
            await bus.publish(Work(n))
        await bus.drain()
        yield url, bus, dashboard
        tg.cancel_scope.cancel()


async def first_line_of_events(url: str) -> str:
    """The status line of ``events``, once its ``hello`` came (raw socket: backend-neutral)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(f"GET /events HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode())
        data = b""
        while b"event: hello" not in data:
            data += await stream.receive()
    return data.split(b"\r\n", 1)[0].decode()


async def test_the_small_server_serves_every_route() -> None:
    async with served(allow_actions=True) as (url, bus, dashboard):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        async with httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["x-frame-options"] == "DENY"
            assert (await http.get("/app.css")).status_code == 200
            snapshot = (await http.get("/snapshot.json")).json()
            [row] = snapshot["sample"]["types"].values()
            assert row["handled"] == 20
            assert await first_line_of_events(url) == "HTTP/1.1 200 OK"
            with anyio.fail_after(10):  # the server notices the client left
                while dashboard.viewers:
                    await dashboard.next_sample()  # the next tick
            origin = url.rstrip("/")
            refused = await http.post(
                "/action",
                json={"action": "pause", "target": next(iter(snapshot["sample"]["types"]))},
                headers={"origin": "http://evil.example", "x-csrf-token": dashboard.csrf_token},
            )
            assert refused.status_code == 403
            paused = await http.post(
                "/action",
                json={"action": "pause", "target": next(iter(snapshot["sample"]["types"]))},
                headers={"origin": origin, "x-csrf-token": dashboard.csrf_token},
            )
            assert paused.status_code == 200
        assert bus.paused(Work)


async def test_top_shows_the_feed_sorted_and_stops() -> None:
    async with served() as (url, _, _):
        out = io.StringIO()
        shown = await run_top(url, auth_headers(None, None, []), sort="rate", frames=3, out=out)
        assert shown == 3
        text = out.getvalue()
        assert "eventcore top" in text
        assert "Work" in text
        assert "sort: rate" in text


async def test_top_once_and_its_errors(capsys: pytest.CaptureFixture[str]) -> None:
    async with served(auth=basic_auth("ops", "pw")) as (url, _, _):
        with pytest.raises(SystemExit, match="401"):
            await anyio.to_thread.run_sync(main, ["top", url, "--once"])
        import os

        os.environ["EVENTCORE_DASHBOARD_PASSWORD"] = "pw"
        try:
            await anyio.to_thread.run_sync(main, ["top", url, "--once", "--user", "ops"])
        finally:
            del os.environ["EVENTCORE_DASHBOARD_PASSWORD"]
        assert "Work" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot reach"):
        await anyio.to_thread.run_sync(main, ["top", "http://127.0.0.1:9/", "--once"])


def test_events_are_parsed_and_rows_sorted() -> None:
    lines = [b"retry: 1000\n", b"\n", b": heartbeat\n", b"\n", b"event: sample\n",
             b"id: 1.5\n", b'data: {"a": 1}\n', b"\n"]  # fmt: skip
    assert list(parse_events(iter(lines))) == [("sample", {"a": 1})]
    row = {"depth": 0, "handled_rate": 0.0, "accepted_rate": 0.0}
    sample = {
        "types": {
            "a": {**row, "depth": 1, "handled_rate": 9.0},
            "b": {**row, "depth": 5},
            "c": {**row, "accepted_rate": 20.0},
        }
    }
    assert [name for name, _ in ordered(sample, "depth")] == ["b", "a", "c"]
    assert [name for name, _ in ordered(sample, "rate")] == ["c", "a", "b"]
    assert [name for name, _ in ordered(sample, "name")] == ["a", "b", "c"]
    headers = auth_headers("u", "p", ["X-Team: ops"])
    assert headers["authorization"] == "Basic dTpw"
    assert headers["x-team"] == "ops"


async def test_the_demo_serves_the_dashboard_while_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[int] = []

    async def look() -> None:
        while True:
            await anyio.sleep(0.05)
            match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", capsys.readouterr().out)
            if match:
                break
        async with httpx.AsyncClient() as http:
            answer = await http.get(match.group(1) + "snapshot.json")
            seen.append(answer.status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(look)
        await run_demo(1.0, live=False, dashboard_port=0)
    assert seen == [200]


def test_the_demo_can_skip_the_dashboard(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--seconds", "0.3", "--plain", "--no-dashboard"])
    assert "dashboard:" not in capsys.readouterr().out


async def test_top_once_shows_the_rates_of_a_busy_dispatcher(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: ``--once`` read one sample while nobody watched, whose rates had no
    earlier sample to measure against, so every rate said 0."""
    monkeypatch.setenv("COLUMNS", "200")  # rich: the whole table on one line per type
    async with served() as (url, bus, _), anyio.create_task_group() as tg:

        async def busy() -> None:
            n = 0
            while True:
                n += 1
                await bus.publish(Work(n))
                await anyio.sleep(0.005)

        tg.start_soon(busy)
        await anyio.to_thread.run_sync(main, ["top", url, "--once"])
        tg.cancel_scope.cancel()
    [row] = [line.split() for line in capsys.readouterr().out.splitlines() if "Work" in line]
    accepted_rate, handled_rate = float(row[2]), float(row[3])  # type, depth, acc, hdl
    assert accepted_rate > 0
    assert handled_rate > 0


def test_rates_between_two_samples() -> None:
    row = {"accepted": 10, "handled": 8, "dropped": 0, "failed": 1}
    before = {"t": 100.0, "types": {"a": row}}
    after = {"t": 102.0, "types": {"a": {**row, "accepted": 30, "handled": 28}, "b": row}}
    rates = with_rates(before, after)["types"]
    assert (rates["a"]["accepted_rate"], rates["a"]["handled_rate"]) == (10.0, 10.0)
    assert rates["a"]["failed_rate"] == 0.0
    assert rates["b"]["accepted_rate"] == 0.0  # new since: nothing to measure against
    assert with_rates(after, after) == after  # one sample twice: left as it was
