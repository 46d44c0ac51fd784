"""Run a :class:`~eventcore.Dispatcher` for the life of a FastAPI or Starlette app.

::

    from fastapi import Depends, FastAPI
    from eventcore import Dispatcher
    from eventcore.integrations.fastapi import DispatcherDep, add_backpressure_handlers, lifespan

    bus = Dispatcher()
    app = FastAPI(lifespan=lifespan(bus))
    add_backpressure_handlers(app)  # QueueFull... -> 503 + Retry-After; Unauthorized -> 403

    @app.post("/orders")
    async def place(bus: DispatcherDep) -> dict[str, bool]:
        return {"accepted": await bus.publish(OrderPlaced("A1", 10.0), timeout=1.0)}

The lifespan starts the dispatcher before the app serves requests and, at
shutdown (after the server has finished the requests in progress), drains every
accepted event within ``bus.shutdown_timeout``. It turns on
``bus.propagate_context``: handlers run in a copy of the publishing request's
contextvars (its request id, its OpenTelemetry span). Only Starlette is imported here,
so it works for plain Starlette apps too; :data:`DispatcherDep` needs FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from eventcore import Dispatcher

from ._context import propagate_context as _propagate_context
from ._http import REFUSALS, refusal

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "STATE_KEY",
    "DispatcherDep",
    "Lifespan",
    "add_backpressure_handlers",
    "backpressure_response",
    "get_dispatcher",
    "lifespan",
]

STATE_KEY = "eventcore_dispatcher"
"""The name under which the dispatcher is kept in ``app.state`` and the lifespan state."""

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]
"""A Starlette lifespan: ``lifespan(app)`` returns an async context manager."""


def lifespan(
    bus: Dispatcher, inner: Lifespan | None = None, *, propagate_context: bool = True
) -> Lifespan:
    """A lifespan that runs *bus* while the app runs: ``FastAPI(lifespan=lifespan(bus))``.

    :param bus: the dispatcher; it is started at startup and drained at shutdown
    :param inner: your own lifespan, run inside (it may publish at startup and
        shutdown, and the state it yields is merged into the app's state)
    :param propagate_context: turn on ``bus.propagate_context``, so that handlers see
        the publishing request's contextvars (request id, OpenTelemetry span); False
        leaves the setting as it is
    :return: the lifespan function to give to ``FastAPI`` or ``Starlette``
    """
    if propagate_context:
        _propagate_context(bus, "eventcore.integrations.fastapi.lifespan")

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with bus:
            # app.state serves clients that skip the lifespan state (httpx ASGITransport)
            setattr(app.state, STATE_KEY, bus)
            state: dict[str, Any] = {STATE_KEY: bus}
            if inner is None:
                yield state
                return
            async with inner(app) as inner_state:
                if inner_state:
                    state.update(inner_state)
                yield state

    return run


def get_dispatcher(connection: HTTPConnection) -> Dispatcher:
    """The app's dispatcher, for ``Depends(get_dispatcher)`` or a Starlette endpoint.

    :raises RuntimeError: the app was not started with :func:`lifespan`
    """
    bus = getattr(connection.state, STATE_KEY, None)
    if bus is None:
        bus = getattr(connection.app.state, STATE_KEY, None)
    if not isinstance(bus, Dispatcher):
        raise RuntimeError(
            "no eventcore Dispatcher on this app: create it with "
            "`FastAPI(lifespan=eventcore.integrations.fastapi.lifespan(bus))` and run its "
            "lifespan (servers do; for httpx.ASGITransport use `app.router.lifespan_context(app)`)"
        )
    return bus


try:
    from fastapi import Depends
except ImportError:  # pragma: no cover - plain Starlette
    pass
else:
    DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
    """A FastAPI parameter annotation: ``async def endpoint(bus: DispatcherDep)``."""


def backpressure_response(exc: Exception, retry_after: float = 1.0) -> Response:
    """The answer to a publish the dispatcher refused: 503 Service Unavailable with
    ``Retry-After`` for backpressure, 403 Forbidden for ``Unauthorized``.

    :param exc: ``QueueFull``, ``PublishTimeout``, ``DispatcherClosed`` or ``Unauthorized``
    :param retry_after: seconds the client should wait (rounded up to whole seconds)
    """
    status, body, headers = refusal(exc, retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


def add_backpressure_handlers(app: Starlette, retry_after: float = 1.0) -> None:
    """Map ``QueueFull``, ``PublishTimeout`` and ``DispatcherClosed`` to 503 +
    Retry-After, and ``Unauthorized`` to 403 Forbidden.

    Backpressure then reaches the client as a response it can act on, and a
    refused event is never reported as accepted.
    """

    async def handle(request: Request, exc: Exception) -> Response:
        return backpressure_response(exc, retry_after)

    for exc_class in REFUSALS:
        app.add_exception_handler(exc_class, handle)
