"""The dashboard's core and its ASGI adapter, in process (httpx.ASGITransport), on
asyncio, uvloop and trio: the figures, the event stream, and the safety rules."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from eventcore import BrokerStats, Dispatcher, Overflow
from eventcore.dashboard import Dashboard, Request, basic_auth
from eventcore.dashboard._http import Stream, handle
from eventcore.dashboard.asgi import DashboardApp
from tests.fake_broker import FakeBroker, Job

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

HOST = "http://127.0.0.1"
ORIGIN = {"origin": HOST}


@dataclass(frozen=True)
class Tick:
    n: int
    fail: bool = False


def tick_id() -> str:
    return f"{Tick.__module__}.{Tick.__qualname__}"


def make_bus(**settings: Any) -> tuple[Dispatcher, list[int]]:
    seen: list[int] = []
    bus = Dispatcher(on_error=lambda *args: None, **settings)

    @bus.on(Tick)
    async def handler(event: Tick) -> None:
        seen.append(event.n)
        if event.fail:
            raise ValueError(f"secret-{event.n}")

    return bus, seen


@asynccontextmanager
async def client_for(
    dashboard: Dashboard, client: tuple[str, int] = ("127.0.0.1", 5000)
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=DashboardApp(dashboard), client=client)
    async with httpx.AsyncClient(transport=transport, base_url=HOST) as http:
        yield http


async def stream_events(dashboard: Dashboard, count: int, **headers: str) -> list[tuple[str, Any]]:
    """The first *count* events of the stream (kind, data); heartbeats as ("heartbeat", None)."""
    answer = await handle(dashboard, Request("GET", "/events", headers, "127.0.0.1"))
    assert isinstance(answer, Stream)
    events: list[tuple[str, Any]] = []
    try:
        async for chunk in answer.body:
            text = chunk.decode()
            if text.startswith(": heartbeat"):
                events.append(("heartbeat", None))
            elif text.startswith("event: "):
                lines = dict(line.split(": ", 1) for line in text.strip().splitlines())
                events.append((lines["event"], json.loads(lines["data"])))
            if len(events) >= count:
                break
    finally:
        answer.release()
        await answer.body.aclose()  # type: ignore[attr-defined]
    return events


async def test_a_sample_shows_each_figure_of_a_type() -> None:
    bus, _ = make_bus(queue_size=8, concurrency=2)
    dashboard = Dashboard(bus, interval=0.01)
    async with bus, dashboard:
        bus.pause(Tick)
        for n in range(5):
            await bus.publish(Tick(n))
        row = dashboard.take_sample()["types"][tick_id()]
        assert (row["depth"], row["capacity"], row["in_flight"], row["limit"]) == (5, 8, 0, 2)
        assert (row["paused"], row["overflow"], row["accepted"], row["handled"]) == (
            True, "BLOCK", 5, 0,
        )  # fmt: skip
        bus.resume(Tick)
        await bus.drain()
        row = dashboard.take_sample()["types"][tick_id()]
        assert row["handled"] == 5
        assert row["handled_rate"] > 0
        assert row["broker"] is None
        assert row["name"] == "Tick"


def measuring(dashboard: Dashboard) -> bool:
    """Whether the dashboard's latency middleware is installed."""
    return dashboard._middleware is not None


async def test_latency_is_measured_only_while_someone_watches() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, interval=0.01, linger=0, heartbeat=0.01)
    chain = bus._delivery.handle_chain
    async with bus, dashboard:
        assert bus._delivery.handle_chain == chain  # nobody watches: nothing installed
        events = await stream_events(dashboard, 2)
        assert [kind for kind, _ in events] == ["hello", "sample"]
        assert len(bus._delivery.handle_chain) == len(chain) + 1
        # a viewer stays while events are handled (linger=0: without one the sampler
        # could stop measuring before the handlers ran)
        assert dashboard.join()
        while not measuring(dashboard):  # the sampler restarts, measuring again
            await dashboard.next_sample()
        for n in range(50):
            await bus.publish(Tick(n))
        await bus.drain()
        row = dashboard.take_sample()["types"][tick_id()]
        assert row["p50"] is not None
        assert 0 <= row["p50"] <= row["p95"] <= row["p99"]
        dashboard.leave()
        while measuring(dashboard):  # the viewer left: the sampler stops
            await dashboard.next_sample()
        assert bus._delivery.handle_chain == chain


async def test_the_stream_sends_history_samples_and_heartbeats() -> None:
    bus, _ = make_bus()
    # published before the first sample, and with settings of its own (an idle type
    # without them is retired), Tick is in every sample
    bus.configure(Tick, queue_size=16)
    dashboard = Dashboard(bus, interval=0.01, heartbeat=0.001, linger=60)
    async with bus:
        await bus.publish(Tick(0))
        await bus.drain()
        async with dashboard:
            await check_history_stream(dashboard)


async def check_history_stream(dashboard: Dashboard) -> None:
    """The hello, samples, heartbeats and a reload's history of one stream."""
    events = await stream_events(dashboard, 4)
    hello = events[0][1]
    assert events[0][0] == "hello"
    assert {"csrf", "actions", "payloads", "interval", "history", "letters"} <= set(hello)
    assert "sample" in [kind for kind, _ in events[1:]] or "heartbeat" in [
        kind for kind, _ in events[1:]
    ]
    assert len(dashboard.samples) >= 1  # kept in the ring: a reload sees it
    last = dashboard.samples[-1]["t"]
    again = await stream_events(dashboard, 1, **{"last-event-id": str(last)})
    assert all(s["t"] > last for s in again[0][1]["history"])
    reloaded = await stream_events(dashboard, 1)
    history = reloaded[0][1]["history"]
    assert len(history) >= len(hello["history"])
    assert history[-1] == dashboard.samples[-1]  # the newest whole ...
    for older in history[:-1]:  # ... the older ones with what the charts draw
        [row] = older["types"].values()
        assert set(row) == {"depth", "accepted_rate", "handled_rate", "dropped_rate",
                            "failed_rate"}  # fmt: skip


async def test_the_ring_is_bounded() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, interval=1.0, history=3.0)
    async with bus, dashboard:
        for _ in range(10):
            dashboard.take_sample()
        assert len(dashboard.samples) == 3


async def test_viewers_are_capped() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, max_viewers=1)
    async with bus, dashboard:
        first = await handle(dashboard, Request("GET", "/events", {}, "127.0.0.1"))
        assert isinstance(first, Stream)
        async with client_for(dashboard) as http:
            second = await http.get("/events")
            assert second.status_code == 503
            assert "too many viewers" in second.text
        first.release()
        assert dashboard.viewers == 0


ENDPOINTS = [("GET", "/"), ("GET", "/app.js"), ("GET", "/snapshot.json"), ("GET", "/events"),
             ("POST", "/action")]  # fmt: skip


async def _each(http: httpx.AsyncClient, headers: dict[str, str]) -> list[int]:
    statuses = []
    for method, path in ENDPOINTS:
        response = await http.request(method, path, headers=headers, json={})
        statuses.append(response.status_code)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "script-src 'self'" in response.headers["content-security-policy"]
    return statuses


async def test_without_auth_only_loopback_clients_are_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, max_viewers=1, max_stream=0)
    assert "no auth=" in caplog.text
    async with bus, dashboard:
        async with client_for(dashboard, ("10.1.2.3", 4000)) as http:
            assert await _each(http, {}) == [403] * len(ENDPOINTS)
        async with client_for(dashboard) as http:
            proxied = {"x-forwarded-for": "203.0.113.9"}
            assert await _each(http, proxied) == [403] * len(ENDPOINTS)
            assert (await _each(http, {}))[:4] == [200, 200, 200, 200]
        async with client_for(dashboard, ("::1", 4000)) as http:
            assert (await http.get("/snapshot.json")).status_code == 200
            for host in ("localhost:8000", "[::1]:8000", "127.0.0.2", "app.localhost"):
                ok = await http.get("/snapshot.json", headers={"host": host})
                assert ok.status_code == 200, host
            # a site whose name was rebound to 127.0.0.1 is same-origin with the page
            rebound = await http.get("/snapshot.json", headers={"host": "evil.example:8000"})
            assert rebound.status_code == 403
            assert "loopback Host" in rebound.text


async def test_basic_auth_guards_every_endpoint() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, auth=basic_auth("ops", "s3cret"), max_stream=0)
    good = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    async with bus, dashboard, client_for(dashboard, ("198.51.100.7", 4000)) as http:
        assert await _each(http, {}) == [401] * len(ENDPOINTS)
        assert await _each(http, {"authorization": bad}) == [401] * len(ENDPOINTS)
        assert await _each(http, {"authorization": "Bearer x"}) == [401] * len(ENDPOINTS)
        refused = await http.get("/")
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert (await _each(http, {"authorization": good}))[:4] == [200] * 4


async def test_an_async_auth_callable_is_awaited() -> None:
    bus, _ = make_bus()

    async def auth(request: Request) -> bool:
        await anyio.lowlevel.checkpoint()
        return request.headers.get("x-team") == "ops"

    dashboard = Dashboard(bus, auth=auth)
    async with bus, dashboard, client_for(dashboard, ("198.51.100.7", 4000)) as http:
        assert (await http.get("/snapshot.json")).status_code == 401
        ok = await http.get("/snapshot.json", headers={"x-team": "ops"})
        assert ok.status_code == 200


async def test_read_only_unless_actions_are_allowed() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus)
    async with bus, dashboard, client_for(dashboard) as http:
        headers = {**ORIGIN, "x-csrf-token": dashboard.csrf_token}
        answer = await http.post(
            "/action", json={"action": "pause", "target": tick_id()}, headers=headers
        )
        assert answer.status_code == 403
        assert "read-only" in answer.text
    assert not bus.paused(Tick)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"x-csrf-token": "TOKEN"}, "Origin"),
        ({"origin": "http://evil.example", "x-csrf-token": "TOKEN"}, "Origin"),
        ({"origin": "http://127.0.0.1:9999", "x-csrf-token": "TOKEN"}, "Origin"),
        ({**ORIGIN, "x-csrf-token": "nope"}, "CSRF"),
        ({**ORIGIN}, "CSRF"),
        ({**ORIGIN, "x-csrf-token": "TOKEN", "sec-fetch-site": "cross-site"}, "same-origin"),
    ],
)
async def test_an_action_needs_the_token_and_the_pages_origin(
    headers: dict[str, str], why: str
) -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, allow_actions=True)
    headers = {k: v.replace("TOKEN", dashboard.csrf_token) for k, v in headers.items()}
    async with bus, dashboard, client_for(dashboard) as http:
        answer = await http.post(
            "/action", json={"action": "pause", "target": tick_id()}, headers=headers
        )
        assert answer.status_code == 403
        assert why in answer.text
    assert not bus.paused(Tick)


async def test_pause_and_resume_from_the_dashboard() -> None:
    bus, seen = make_bus(queue_size=4, overflow=Overflow.DROP_NEWEST)
    dashboard = Dashboard(bus, allow_actions=True, allowed_origins=("https://ops.example",))
    async with bus, dashboard:
        await bus.publish(Tick(0))
        await bus.drain()
        async with client_for(dashboard) as http:
            headers = {"origin": "https://ops.example", "x-csrf-token": dashboard.csrf_token}

            async def act(action: str, target: str) -> httpx.Response:
                body = {"action": action, "target": target}
                return await http.post("/action", json=body, headers=headers)

            answer = await act("pause", tick_id())
            assert answer.json() == {"ok": True, "paused": True}
            results = [await bus.publish(Tick(n)) for n in range(1, 7)]
            assert results == [True] * 4 + [False] * 2  # the paused queue filled
            snapshot = (await http.get("/snapshot.json")).json()
            assert snapshot["sample"]["types"][tick_id()]["depth"] == 4
            assert seen == [0]
            assert (await act("resume", tick_id())).json() == {"ok": True, "paused": False}
            await bus.drain()
            assert seen == [0, 1, 2, 3, 4]
            assert (await act("pause", "no.such.Type")).status_code == 404
            assert (await act("explode", tick_id())).status_code == 400
            plain = await http.post("/action", content=b"{}", headers=headers)
            assert plain.status_code == 415


async def test_dead_letters_are_kept_redacted_replayed_and_discarded() -> None:
    bus, seen = make_bus()
    dashboard = Dashboard(bus, allow_actions=True, dead_letters=3)
    async with bus, dashboard:
        for n in range(5):
            await bus.publish(Tick(n, fail=True))
        await bus.drain()
        letters = dashboard.letter_list()
        assert [letter["id"] for letter in letters] == [5, 4, 3]  # bounded, newest first
        assert letters[0]["error"] == "ValueError"
        assert letters[0]["payload"] is None
        assert letters[0]["message"] is None
        assert "secret" not in json.dumps(dashboard.hello())
        async with client_for(dashboard) as http:
            headers = {**ORIGIN, "x-csrf-token": dashboard.csrf_token}
            replay = await http.post(
                "/action", json={"action": "replay", "target": "4"}, headers=headers
            )
            assert replay.json() == {"ok": True}
            await bus.drain()
            assert seen.count(3) == 2  # handled again (and failed again: a new letter)
            discard = await http.post(
                "/action", json={"action": "discard", "target": "5"}, headers=headers
            )
            assert discard.status_code == 200
            assert 5 not in [letter["id"] for letter in dashboard.letter_list()]
            gone = await http.post(
                "/action", json={"action": "discard", "target": "5"}, headers=headers
            )
            assert gone.status_code == 404


async def test_a_flood_of_one_kind_of_dead_letter_does_not_hide_another() -> None:
    """Grouped by type and reason: the failures first, each group's count since start
    and its newest letter, also once the recent list holds only the flood."""

    @dataclass(frozen=True)
    class Reading:
        n: int

    bus, _ = make_bus(dead_letter_unmatched=True)
    dashboard = Dashboard(bus, allow_actions=True, dead_letters=5)
    async with bus, dashboard:
        await bus.publish(Tick(1, fail=True))
        await bus.drain()
        for n in range(50):
            await bus.publish(Reading(n))  # no subscriber: dead-lettered as unmatched
        await bus.drain()
        reading = Reading.__qualname__  # as the dashboard names a type
        assert {letter["type"] for letter in dashboard.letter_list()} == {reading}
        failed, flood = dashboard.letter_groups()
        assert (failed["type"], failed["reason"], failed["count"]) == ("Tick", "handler_failed", 1)
        assert failed["latest"]["error"] == "ValueError"
        assert (flood["type"], flood["reason"], flood["count"]) == (reading, "unmatched", 50)
        assert dashboard.hello()["letter_groups"] == dashboard.letter_groups()
        async with client_for(dashboard) as http:
            snapshot = (await http.get("/snapshot.json")).json()
            assert snapshot["letter_groups"] == dashboard.letter_groups()
            headers = {**ORIGIN, "x-csrf-token": dashboard.csrf_token}
            target = str(failed["latest"]["id"])  # flooded out of the list, still kept
            discard = await http.post(
                "/action", json={"action": "discard", "target": target}, headers=headers
            )
            assert discard.status_code == 200
        failed = dashboard.letter_groups()[0]
        assert (failed["count"], failed["latest"]) == (1, None)  # counted, no longer kept


async def test_payloads_are_shown_only_when_asked() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus, show_payloads=True)
    async with bus, dashboard:
        await bus.publish(Tick(7, fail=True))
        await bus.drain()
        [letter] = dashboard.letter_list()
        assert letter["payload"] == repr(Tick(7, fail=True))
        assert letter["message"] == "secret-7"


async def test_a_routed_type_shows_its_broker_figures() -> None:
    class Reporting(FakeBroker):
        def broker_stats(self, event_type: type) -> BrokerStats:
            return BrokerStats(pending=len(self.pending), redelivered=2)

    broker = Reporting()
    bus = Dispatcher()
    bus.configure(Job, transport=broker)

    @bus.on(Job)
    async def handler(job: Job) -> None:
        pass

    dashboard = Dashboard(bus)
    async with bus, dashboard:
        await bus.publish(Job(1))
        await broker.until(1)
        await bus.drain()
        row = dashboard.take_sample()["types"][f"{Job.__module__}.{Job.__qualname__}"]
        assert row["broker"] == {"pending": 0, "redelivered": 2}


async def test_services_figures_are_sampled_and_sent() -> None:
    # an outbox relay's backlog beside the types (issue 22: "the relay and the inbox
    # report their backlog in stats(), Prometheus and the dashboard")
    from eventcore.outbox import InboxStats, RelayStats

    relay = RelayStats(
        backlog=3, oldest_age=0.25, sent=7, dead_lettered=0, retried=1, errors=0,
        leader=True, connected=True,
    )  # fmt: skip

    def broken() -> object:
        raise RuntimeError("database gone")

    bus, _ = make_bus()
    dashboard = Dashboard(
        bus,
        services={
            "outbox relay": lambda: relay,
            "inbox": lambda: InboxStats(handled=5, duplicates=2, failed=0, expired=0),
            "queue": lambda: {"depth": 4, "ratio": float("nan"), "since": object()},
            "broken": broken,
            "wrong": lambda: 42,
        },
    )
    async with bus, dashboard, client_for(dashboard) as http:
        services = dashboard.take_sample()["services"]
        assert services["outbox relay"] == {
            "backlog": 3, "oldest_age": 0.25, "sent": 7, "dead_lettered": 0, "retried": 1,
            "errors": 0, "leader": True, "connected": True,
        }  # fmt: skip
        assert services["inbox"]["duplicates"] == 2
        assert services["queue"]["depth"] == 4
        assert services["queue"]["ratio"] is None  # JSON has no NaN
        assert isinstance(services["queue"]["since"], str)
        assert services["broken"] == {"error": "RuntimeError"}  # the sampler goes on
        assert services["wrong"] == {"error": "not figures: int"}
        snapshot = (await http.get("/snapshot.json")).json()
        assert snapshot["sample"]["services"]["outbox relay"]["backlog"] == 3


async def test_relative_urls_and_the_mount_point_redirect() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    bus, _ = make_bus()
    dashboard = Dashboard(bus)
    app = Starlette(routes=[Mount("/ops/dashboard", app=DashboardApp(dashboard))])
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with bus, dashboard, httpx.AsyncClient(transport=transport, base_url=HOST) as http:
        moved = await http.get("/ops/dashboard")
        assert moved.status_code in (307, 308)
        assert moved.headers["location"].endswith("dashboard/")
        page = await http.get("/ops/dashboard/")
        assert page.status_code == 200
        assert 'src="app.js"' in page.text
        assert 'href="app.css"' in page.text
        assert 'src="/' not in page.text
        assert 'href="/' not in page.text
        script = (await http.get("/ops/dashboard/app.js")).text
        assert 'EventSource("events")' in script
        assert 'fetch("action"' in script
        assert "http" not in script.replace("http://www.w3.org/2000/svg", "")  # no CDN
        snapshot = await http.get("/ops/dashboard/snapshot.json")
        assert snapshot.status_code == 200
        assert (await http.get("/ops/dashboard/nothing")).status_code == 404


async def test_a_dashboard_not_started_says_how_to_start_it() -> None:
    bus, _ = make_bus()
    dashboard = Dashboard(bus)
    async with client_for(dashboard) as http:
        answer = await http.get("/snapshot.json")
        assert answer.status_code == 503
        assert "async with dashboard" in answer.text


def test_bad_settings_are_refused() -> None:
    bus, _ = make_bus()
    with pytest.raises(TypeError):
        Dashboard(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        Dashboard(bus, interval=0)
    with pytest.raises(TypeError, match="auth"):
        Dashboard(bus, auth="ops:secret")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="services="):
        Dashboard(bus, services={"relay": 3})  # type: ignore[dict-item]


def test_the_dashboard_package_exports_documented_names() -> None:
    import inspect

    import eventcore.dashboard as package

    for name in package.__all__:
        obj = getattr(package, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__doc__, name
    public = [
        name
        for name, member in inspect.getmembers(Dashboard)
        if not name.startswith("_") and callable(member)
    ]
    assert all(getattr(Dashboard, name).__doc__ for name in public), public
