"""Run a :class:`~eventcore.Dispatcher` for the life of an aiohttp application.

::

    from aiohttp import web
    from eventcore import Dispatcher
    from eventcore.integrations.aiohttp import backpressure_middleware, get_dispatcher, setup

    async def place(request: web.Request) -> web.Response:
        await get_dispatcher(request).publish(OrderPlaced("A1", 10.0), timeout=1.0)
        return web.json_response({"accepted": True}, status=202)

    app = web.Application(middlewares=[backpressure_middleware()])  # 503, 403
    app.router.add_post("/orders", place)
    setup(app, Dispatcher())

:func:`setup` stores the dispatcher under the typed :data:`DISPATCHER_KEY` and
adds a ``cleanup_ctx`` entry (as aiojobs does): the dispatcher starts with the
app and, at cleanup - after the server stopped accepting and finished its
requests - drains every accepted event within ``bus.shutdown_timeout``. It turns
on ``bus.propagate_context``: handlers run in a copy of the publishing request's
contextvars (its request id, its OpenTelemetry span).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from eventcore import Dispatcher

from ._context import propagate_context as _propagate_context
from ._http import REFUSALS, refusal

__all__ = ["DISPATCHER_KEY", "backpressure_middleware", "get_dispatcher", "setup"]

DISPATCHER_KEY = web.AppKey("eventcore_dispatcher", Dispatcher)
"""Where :func:`setup` keeps the dispatcher: ``app[DISPATCHER_KEY]``."""


def setup(app: web.Application, bus: Dispatcher, *, propagate_context: bool = True) -> Dispatcher:
    """Run *bus* for the life of *app*: started at startup, drained at cleanup.

    Call it before the app starts. Sub-applications see the dispatcher through
    :func:`get_dispatcher` (it looks in ``request.config_dict``).

    :param propagate_context: turn on ``bus.propagate_context``, so that handlers see
        the publishing request's contextvars (request id, OpenTelemetry span); False
        leaves the setting as it is
    :return: *bus*
    """
    if propagate_context:
        _propagate_context(bus, "eventcore.integrations.aiohttp.setup")
    app[DISPATCHER_KEY] = bus  # before the app is frozen: setting keys later is deprecated

    async def run_dispatcher(app: web.Application) -> AsyncIterator[None]:
        async with bus:
            yield

    app.cleanup_ctx.append(run_dispatcher)
    return bus


def get_dispatcher(request: web.Request) -> Dispatcher:
    """The dispatcher of the request's application (or of a parent application).

    :raises RuntimeError: :func:`setup` was not called on the app
    """
    try:
        return request.config_dict[DISPATCHER_KEY]
    except KeyError:
        raise RuntimeError(
            "no eventcore Dispatcher on this app: call "
            "eventcore.integrations.aiohttp.setup(app, bus) before starting it"
        ) from None


def backpressure_middleware(retry_after: float = 1.0) -> Middleware:
    """Middleware turning ``QueueFull``, ``PublishTimeout`` and ``DispatcherClosed`` into
    503 Service Unavailable with ``Retry-After`` (rounded up to whole seconds), and
    ``Unauthorized`` into 403 Forbidden."""

    @web.middleware
    async def backpressure(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except REFUSALS as exc:
            status, body, headers = refusal(exc, retry_after)
            return web.json_response(body, status=status, headers=headers)

    return backpressure
