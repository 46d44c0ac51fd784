"""An orders service on FastAPI: endpoints publish events, handlers process them.

Run it from the repository root (``pip install "eventcore-py[fastapi,prometheus]" uvicorn``)::

    uvicorn examples.fastapi_app:app

then::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' -d '{"total": 12.5}'
    curl localhost:8000/orders/<order_id>       # accepted -> reserved -> confirmed
    curl localhost:8000/stats                   # bus.stats() per event type
    curl localhost:8000/metrics                 # Prometheus text format

``POST /orders`` answers 202 once the event is accepted. When the handlers fall
behind and the queue stays full for ``publish_timeout`` seconds, it answers 503
with ``Retry-After``: backpressure reaches the client, and no accepted order is
lost. Stopping the server (Ctrl+C) drains every accepted event before it exits.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from eventcore import Dispatcher
from eventcore.integrations import logging as event_logging
from eventcore.integrations.fastapi import (
    DispatcherDep,
    add_backpressure_handlers,
    lifespan,
)
from examples.orders import OrderCancelled, OrderPlaced, Orders, wire


class PlaceOrder(BaseModel):
    """The body of ``POST /orders``."""

    total: float = Field(gt=0)
    order_id: str | None = None


def get_orders(request: Request) -> Orders:
    """The app's :class:`Orders` (a FastAPI dependency)."""
    orders: Orders = request.app.state.orders
    return orders


OrdersDep = Annotated[Orders, Depends(get_orders)]


def create_app(
    bus: Dispatcher | None = None,
    *,
    queue_size: int = 1000,
    concurrency: int = 8,
    publish_timeout: float = 1.0,
    work_seconds: float = 0.01,
) -> FastAPI:
    """Build the app around *bus* (a new dispatcher when None).

    :param queue_size: per event type, how many accepted events may wait
    :param concurrency: per event type, how many handler calls may run at once
    :param publish_timeout: how long a request waits for room before answering 503
    :param work_seconds: simulated I/O time of each handler
    """
    bus, orders, registry = wire(bus, queue_size, concurrency, work_seconds)

    app = FastAPI(title="orders", lifespan=lifespan(bus))
    app.state.orders = orders
    add_backpressure_handlers(app, retry_after=1)

    @app.post("/orders", status_code=202)
    async def place_order(
        body: PlaceOrder, bus: DispatcherDep, orders: OrdersDep
    ) -> dict[str, str]:
        order_id = body.order_id or uuid.uuid4().hex[:12]
        # Raises PublishTimeout (-> 503 + Retry-After) when the queue stays full.
        await bus.publish(OrderPlaced(order_id, body.total), timeout=publish_timeout)
        orders.status.setdefault(order_id, "accepted")
        return {"order_id": order_id, "status": "accepted"}

    @app.post("/orders/{order_id}/cancel", status_code=202)
    async def cancel_order(order_id: str, bus: DispatcherDep) -> dict[str, str]:
        await bus.publish(OrderCancelled(order_id), timeout=publish_timeout)
        return {"order_id": order_id, "status": "cancelling"}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, orders: OrdersDep) -> dict[str, str]:
        status = orders.status.get(order_id)
        if status is None:
            raise HTTPException(status_code=404, detail=f"no order {order_id}")
        return {"order_id": order_id, "status": status}

    @app.get("/stats")
    async def stats(bus: DispatcherDep) -> dict[str, dict[str, Any]]:
        return {
            event_type.__qualname__: {k: v for k, v in asdict(s).items() if k != "event_type"}
            for event_type, s in bus.stats().items()
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _configure_logging() -> None:
    """Show the event type and id on the example's log lines."""
    logger = logging.getLogger("orders")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(event_logging.EventContextFilter())
    handler.setFormatter(
        logging.Formatter("%(levelname)s:     %(name)s [%(event_type)s #%(event_id)s] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_configure_logging()
app = create_app()
