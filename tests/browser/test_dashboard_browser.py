"""The dashboard in a real browser: Debian's chromium driven by playwright (the Python
package, pointed at the system chromium: never a downloaded browser build), the app
served by uvicorn on 127.0.0.1.

Skipped, with the reason, when chromium or playwright is missing; under ``CI=true``
(or ``EVENTCORE_REQUIRE_BROWSER=1``) that fails instead: ``.ci/run`` installs
chromium from Debian's packages when it is absent.

``EVENTCORE_SCREENSHOT=1`` also writes ``docs/dashboard.png`` (the page under the
demo's load).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from eventcore import Dispatcher, Overflow
from eventcore._demo import DemoReport, _orders, _pages, _payments, _sensors, build
from eventcore.dashboard import Dashboard, basic_auth
from eventcore.dashboard.asgi import DashboardApp
from tests.integrations.servers import serve_uvicorn

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

ROOT = Path(__file__).parent.parent.parent
#: generous upper bounds for things to show up (a wait, never a timed assertion)
WAIT_MS = 20_000


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("EVENTCORE_REQUIRE_BROWSER") == "1"


def _chromium() -> str:
    """The system chromium; skip (or, in CI, fail) without it or without playwright."""
    found = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p is not None), None
    )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        found, why = None, "the playwright package is not installed (dependency group browser)"
    else:
        why = "chromium is not on PATH (apt-get install chromium)"
    if found is None:
        if _required():
            pytest.fail(f"{why}, and CI=true requires the browser tests")
        pytest.skip(why)
    return found


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass(frozen=True)
class Flow:
    n: int


@dataclass
class Site:
    base: str
    bus: Dispatcher
    dashboard: Dashboard
    #: the status of each POST to the dashboard's action endpoint
    actions: list[int] = field(default_factory=list)


def flow_id() -> str:
    return f"{Flow.__module__}.{Flow.__qualname__}"


FOREIGN = b"""<!doctype html><title>elsewhere</title><p>another origin</p>"""


@asynccontextmanager
async def site(bus: Dispatcher, dashboard: Dashboard, *feeds: Any) -> AsyncIterator[Site]:
    """A FastAPI app on uvicorn: the dashboard under /ops/dashboard, a page of its own
    at / (another origin when reached as localhost), and *feeds* publishing."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    holder: list[Site] = []
    inner = DashboardApp(dashboard)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST":
                holder[0].actions.append(message["status"])
            await send(message)

        await inner(scope, receive, watch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with bus, dashboard, anyio.create_task_group() as tg:
            for feed in feeds:
                tg.start_soon(feed)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def elsewhere() -> HTMLResponse:
        return HTMLResponse(FOREIGN)

    app.mount("/ops/dashboard", recording)
    async with serve_uvicorn(app) as base:
        holder.append(Site(base, bus, dashboard))
        yield holder[0]


def flowing_bus() -> tuple[Dispatcher, Any]:
    bus = Dispatcher(queue_size=40, concurrency=2, overflow=Overflow.BLOCK)

    @bus.on(Flow)
    async def handler(event: Flow) -> None:
        await anyio.sleep(0.002)

    async def feed() -> None:
        n = 0
        while True:
            n += 1
            await bus.publish(Flow(n))
            if n % 20 == 0:
                await anyio.sleep(0.01)

    return bus, feed


async def click(page: Any, selector: str) -> None:
    """Click the button *selector* names, on the element itself: the page redraws its
    rows at every sample, so a click at the button's coordinates could land on the
    row drawn there a moment later (another dead-letter group, under load)."""
    await page.locator(selector).dispatch_event("click")


async def number(page: Any, selector: str) -> int:
    text = await page.locator(selector).first.inner_text()
    return int(text.split("/")[0].strip())


async def test_the_page_goes_live_counts_and_pauses_round_trip(browser: Any) -> None:
    bus, feed = flowing_bus()
    backlog = {"backlog": 3, "leader": True}  # what a relay's stats() gives, say
    dashboard = Dashboard(
        bus, allow_actions=True, interval=0.2, services={"outbox relay": lambda: backlog}
    )
    async with site(bus, dashboard, feed) as s:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(s.base + "/ops/dashboard")  # redirected to .../dashboard/
        assert page.url == s.base + "/ops/dashboard/"
        await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
        figure = 'tr[data-service="outbox relay"] [data-figure="backlog"]'
        await page.wait_for_selector(figure, timeout=WAIT_MS)
        assert await page.locator(figure).inner_text() == "backlog 3"
        assert await page.locator("#services").is_visible()
        backlog["backlog"] = 0  # the next sample shows the change
        await page.wait_for_function(
            "(sel) => document.querySelector(sel).textContent === 'backlog 0'",
            arg=figure,
            timeout=WAIT_MS,
        )
        row = f'tr[data-type="{flow_id()}"]'
        await page.wait_for_selector(row, timeout=WAIT_MS)
        first = await number(page, f"{row} td.handled")
        await page.wait_for_function(
            "([sel, n]) => parseInt(document.querySelector(sel).textContent) > n",
            arg=[f"{row} td.handled", first],
            timeout=WAIT_MS,
        )  # the counter rises while events flow
        assert await page.locator("#total-chart svg polyline").count() >= 1

        await click(page, f"{row} button.pause")
        await page.wait_for_selector(f'{row}[data-paused="yes"]', timeout=WAIT_MS)
        assert bus.paused(Flow)
        await page.wait_for_function(
            "(sel) => parseInt(document.querySelector(sel).textContent) >= 40",
            arg=f"{row} .depth-value",
            timeout=WAIT_MS,
        )  # paused: the queue fills up to its capacity
        held = bus.stats(Flow).handled
        await page.wait_for_function(
            "(sel) => document.querySelectorAll(sel).length > 0", arg=row, timeout=WAIT_MS
        )
        assert bus.stats(Flow).handled == held  # nothing handled while paused

        await click(page, f"{row} button.resume")
        await page.wait_for_selector(f'{row}[data-paused="no"]', timeout=WAIT_MS)
        assert not bus.paused(Flow)
        await page.wait_for_function(
            "([sel, n]) => parseInt(document.querySelector(sel).textContent) > n",
            arg=[f"{row} td.handled", held],
            timeout=WAIT_MS,
        )
        assert s.actions == [200, 200]
        assert errors == []  # no CSP violation, no script error
        await page.close()  # its event stream ends: the server stops at once


async def test_a_foreign_origin_cannot_act(browser: Any) -> None:
    bus, feed = flowing_bus()
    dashboard = Dashboard(bus, allow_actions=True, interval=0.2)
    async with site(bus, dashboard, feed) as s:
        page = await browser.new_page()
        foreign = s.base.replace("127.0.0.1", "localhost")
        await page.goto(foreign + "/")  # another origin, same machine
        target = s.base + "/ops/dashboard/action"
        body = f'{{"action": "pause", "target": "{flow_id()}"}}'
        # a fetch with the token (a preflight the dashboard never grants) ...
        outcome = await page.evaluate(
            """async ([url, body, token]) => {
                 try {
                   await fetch(url, {method: "POST", body, headers: {
                     "content-type": "application/json", "x-csrf-token": token}});
                   return "sent";
                 } catch (e) { return "blocked"; }
               }""",
            [target, body, dashboard.csrf_token],
        )
        assert outcome == "blocked"
        # ... and the classic cross-site form post, which the browser does send
        async with page.expect_navigation():
            await page.evaluate(
                """([url, body]) => {
                     const form = document.createElement("form");
                     form.method = "POST"; form.action = url; form.enctype = "text/plain";
                     const field = document.createElement("input");
                     field.name = body; field.value = ""; form.appendChild(field);
                     document.body.appendChild(form); form.submit();
                   }""",
                [target, body],
            )
        assert "is not this dashboard's" in await page.content()
        assert s.actions == [403]  # the simple request reached it and was refused
        assert not bus.paused(Flow)
        await page.close()


async def test_loopback_only_without_auth_and_credentials_with_it(browser: Any) -> None:
    bus, feed = flowing_bus()
    async with site(bus, Dashboard(bus, interval=0.2), feed) as s:
        proxied = await browser.new_context(extra_http_headers={"x-forwarded-for": "203.0.113.5"})
        page = await proxied.new_page()
        answer = await page.goto(s.base + "/ops/dashboard/")
        assert answer is not None
        assert answer.status == 403
        assert "loopback clients only" in await page.content()
        await proxied.close()

    bus, feed = flowing_bus()
    guarded = Dashboard(bus, auth=basic_auth("ops", "s3cret"), interval=0.2)
    async with site(bus, guarded, feed) as s:
        anonymous = await browser.new_page()
        from playwright.async_api import Error

        with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):  # 401, no credentials
            await anonymous.goto(s.base + "/ops/dashboard/")
        refused = await anonymous.request.get(s.base + "/ops/dashboard/snapshot.json")
        assert refused.status == 401
        context = await browser.new_context(
            http_credentials={"username": "ops", "password": "s3cret"}
        )
        page = await context.new_page()
        await page.goto(s.base + "/ops/dashboard/")
        await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
        assert await page.locator("button.pause").count() == 0  # read-only by default
        await anonymous.close()
        await context.close()


async def test_the_page_under_the_demos_load(browser: Any) -> None:
    report = DemoReport()
    bus = build(report)
    dashboard = Dashboard(bus, allow_actions=True, interval=0.1)
    seconds = 600.0  # the feeds stop when the site does

    def feeding(feed: Any) -> Any:
        return lambda: feed(bus, report, seconds)

    feeds = [feeding(feed) for feed in (_orders, _pages, _sensors, _payments)]
    async with site(bus, dashboard, *feeds) as s:
        page = await browser.new_page(viewport={"width": 1360, "height": 820})
        await page.goto(s.base + "/ops/dashboard/")
        await page.wait_for_selector('#status[data-state="live"]', timeout=WAIT_MS)
        await page.wait_for_function(
            "() => document.querySelectorAll('#types tbody tr').length >= 5 && "
            "document.querySelectorAll('#letters tbody tr').length >= 1",
            timeout=WAIT_MS,
        )  # every type of the demo, and a dead letter (a declined card)
        await page.wait_for_function(
            "() => document.querySelector('#total-chart polyline') &&"
            " document.querySelector('#total-chart polyline').points.length >= 40",
            timeout=WAIT_MS,
        )
        assert "(redacted)" in await page.locator("#letters").inner_text()
        await page.wait_for_selector(
            'tr[data-group="PaymentRequested|handler_failed"]', timeout=WAIT_MS
        )
        if os.environ.get("EVENTCORE_SCREENSHOT") == "1":
            await page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)

        # the chart says how much time it holds (a few seconds here, never "15 min")
        assert re.fullmatch(
            r"\(events/s, the last \d+ s\)", await page.locator("#span").inner_text()
        )
        # the sparklines have a legend
        legend = await page.locator("#spark-legend").inner_text()
        assert "depth" in legend
        assert "handled/s" in legend
        # the scale's labels sit left of the plot, never over a line
        label_right, plot_left = await page.evaluate(
            """() => {
                 const chart = document.querySelector('#total-chart svg');
                 const label = chart.querySelector('text.scale').getBBox();
                 const xs = [...chart.querySelectorAll('polyline')].flatMap(
                   (line) => [...line.points].map((point) => point.x));
                 return [label.x + label.width, Math.min(...xs)];
               }"""
        )
        assert label_right < plot_left

        # dead letters by reason and type: the failed payments first, not hidden by the
        # evictions' flood; "show" lists only that group
        groups = page.locator("#letter-groups tbody tr")
        assert await groups.first.get_attribute("data-group") == "PaymentRequested|handler_failed"
        evicted = page.locator('tr[data-group="SensorReading|evicted"]')
        await evicted.wait_for(timeout=WAIT_MS)
        await click(page, 'tr[data-group="PaymentRequested|handler_failed"] button.filter')
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#letters tbody tr')].every("
            "(tr) => tr.children[2].textContent === 'PaymentRequested')",
            timeout=WAIT_MS,
        )
        listed = await page.locator("#letters tbody tr td:nth-child(4)").all_inner_texts()
        assert listed
        assert set(listed) == {"handler_failed"}
        assert (
            "handler_failed PaymentRequested" in await page.locator("#letter-filter").inner_text()
        )
        await page.close()
