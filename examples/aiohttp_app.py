"""An orders service on aiohttp (the ``fastapi_app.py`` example, without FastAPI).

Run it from the repository root (``pip install "eventcore-py[aiohttp,prometheus]"``)::

    python -m examples.aiohttp_app                # http://127.0.0.1:8081
    python -m examples.aiohttp_app --port 0       # any free port (printed)
    python -m aiohttp.web -H 127.0.0.1 -P 8081 examples.aiohttp_app:create_app

then ``POST /orders`` (``{"total": 12.5}``), ``GET /orders/{order_id}``,
``POST /orders/{order_id}/cancel``, ``GET /stats`` and ``GET /metrics``. A queue
that stays full for ``publish_timeout`` seconds gives 503 with ``Retry-After``;
stopping the server (Ctrl+C) drains every accepted event before it exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from eventcore import Dispatcher
from eventcore.integrations import logging as event_logging
from eventcore.integrations.aiohttp import backpressure_middleware, get_dispatcher, setup
from examples.orders import OrderCancelled, OrderPlaced, Orders, wire

ORDERS = web.AppKey("orders", Orders)


async def place_order(request: web.Request) -> web.Response:
    """``POST /orders``: publish OrderPlaced; 202 once accepted, 503 when the queue stays full."""
    try:
        body = await request.json()
        total = float(body["total"])
    except (ValueError, KeyError, TypeError):
        raise web.HTTPUnprocessableEntity(
            text='{"detail": "expected {\\"total\\": > 0}"}'
        ) from None
    if total <= 0:
        raise web.HTTPUnprocessableEntity(text='{"detail": "total must be > 0"}')
    order_id = str(body.get("order_id") or uuid.uuid4().hex[:12])
    timeout = request.app[PUBLISH_TIMEOUT]
    await get_dispatcher(request).publish(OrderPlaced(order_id, total), timeout=timeout)
    request.app[ORDERS].status.setdefault(order_id, "accepted")
    return web.json_response({"order_id": order_id, "status": "accepted"}, status=202)


async def cancel_order(request: web.Request) -> web.Response:
    """``POST /orders/{order_id}/cancel``: publish OrderCancelled."""
    order_id = request.match_info["order_id"]
    timeout = request.app[PUBLISH_TIMEOUT]
    await get_dispatcher(request).publish(OrderCancelled(order_id), timeout=timeout)
    return web.json_response({"order_id": order_id, "status": "cancelling"}, status=202)


async def get_order(request: web.Request) -> web.Response:
    """``GET /orders/{order_id}``: the order's status."""
    order_id = request.match_info["order_id"]
    status = request.app[ORDERS].status.get(order_id)
    if status is None:
        raise web.HTTPNotFound(text=json.dumps({"detail": f"no order {order_id}"}))
    return web.json_response({"order_id": order_id, "status": status})


async def stats(request: web.Request) -> web.Response:
    """``GET /stats``: ``bus.stats()`` per event type."""
    return web.json_response(
        {
            event_type.__qualname__: {k: v for k, v in asdict(s).items() if k != "event_type"}
            for event_type, s in get_dispatcher(request).stats().items()
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


PUBLISH_TIMEOUT = web.AppKey("publish_timeout", float)
REGISTRY = web.AppKey("registry", CollectorRegistry)


def make_app(
    bus: Dispatcher | None = None,
    *,
    queue_size: int = 1000,
    concurrency: int = 8,
    publish_timeout: float = 1.0,
    work_seconds: float = 0.01,
) -> web.Application:
    """Build the app around *bus* (see ``fastapi_app.create_app`` for the parameters)."""
    bus, orders, registry = wire(bus, queue_size, concurrency, work_seconds)

    app = web.Application(middlewares=[backpressure_middleware(retry_after=1)])
    app[ORDERS] = orders
    app[REGISTRY] = registry
    app[PUBLISH_TIMEOUT] = publish_timeout
    app.router.add_post("/orders", place_order)
    app.router.add_post("/orders/{order_id}/cancel", cancel_order)
    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    setup(app, bus)  # started with the app, drained at cleanup
    return app


def create_app(argv: Sequence[str] | None = None) -> web.Application:
    """The entry point of ``python -m aiohttp.web examples.aiohttp_app:create_app``."""
    return make_app()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m examples.aiohttp_app [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(name)s [%(event_type)s #%(event_id)s] %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(event_logging.EventContextFilter())
    sock = socket.create_server((args.host, args.port))
    host, port = sock.getsockname()[:2]
    print(f"serving on http://{host}:{port}", flush=True)
    web.run_app(make_app(), sock=sock, print=None)
    print("stopped: every accepted event was handled or reported", flush=True)


if __name__ == "__main__":
    main()
