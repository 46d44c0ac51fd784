"""The dashboard as an aiohttp sub-application.

::

    from aiohttp import web
    from eventcore.dashboard import Dashboard
    from eventcore.dashboard.aiohttp import setup as setup_dashboard

    app = web.Application()
    setup_dashboard(app, Dashboard(bus), prefix="/dashboard")

:func:`setup` adds the sub-application under *prefix* and runs the dashboard's
life in the application's ``cleanup_ctx`` (after the dispatcher's: call it after
``eventcore.integrations.aiohttp.setup``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ._core import Dashboard, Request
from ._http import MAX_BODY, Reply, handle

__all__ = ["DASHBOARD_KEY", "setup", "subapp"]

DASHBOARD_KEY = web.AppKey("eventcore_dashboard", Dashboard)
"""Where the sub-application keeps its :class:`Dashboard`."""


def subapp(dashboard: Dashboard) -> web.Application:
    """An aiohttp application serving *dashboard*; ``app.add_subapp(prefix, it)``.

    The dashboard's life (``async with dashboard``) is the caller's: :func:`setup`
    runs it in the parent's ``cleanup_ctx``.
    """
    app = web.Application(client_max_size=MAX_BODY)
    app[DASHBOARD_KEY] = dashboard

    async def serve(request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail")
        route = "" if tail is None else "/" + tail
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.read() if request.method == "POST" else b""
        mount_name = request.path.rstrip("/").rpartition("/")[2]
        answer = await handle(
            dashboard, Request(request.method, route, headers, request.remote, body), mount_name
        )
        if isinstance(answer, Reply):
            response = web.Response(status=answer.status, body=answer.body)
            for name, value in answer.headers:
                response.headers[name] = value
            return response
        stream = web.StreamResponse(status=answer.status)
        for name, value in answer.headers:
            stream.headers[name] = value
        try:
            await stream.prepare(request)
            async for chunk in answer.body:
                await stream.write(chunk)
        except (ConnectionResetError, OSError):
            pass  # the client went away
        finally:
            answer.release()
            await answer.body.aclose()  # type: ignore[attr-defined]
        return stream

    app.router.add_route("*", "", serve)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


def setup(app: web.Application, dashboard: Dashboard, prefix: str = "/dashboard") -> None:
    """Serve *dashboard* under *prefix* of *app* (its page is at ``prefix + "/"``) and
    run its life in *app*'s ``cleanup_ctx``.

    Call it after ``eventcore.integrations.aiohttp.setup(app, bus)`` (or whatever
    starts the dispatcher): contexts end in the reverse order, so the dashboard
    stops before the dispatcher drains.
    """
    app.add_subapp(prefix.rstrip("/"), subapp(dashboard))

    async def life(app: web.Application) -> AsyncIterator[None]:
        async with dashboard:
            yield

    app.cleanup_ctx.append(life)
