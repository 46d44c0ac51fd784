"""Middleware, the publisher's context in handlers, lifecycle hooks, slow-handler warnings.

Run it with ``python examples/middleware_and_context.py``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from typing import Any

import anyio

from eventcore import CallNext, Dispatcher, HandlerCall

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@dataclasses.dataclass(frozen=True)
class SignedUp:
    email: str
    source: str = ""


def stamp_source(event: Any) -> Any:
    """Publish middleware: enrich (return a copy), or refuse (return None)."""
    if isinstance(event, SignedUp):
        if event.email.endswith("@spam.example"):
            return None  # refused: publish() returns False, on_drop hears REJECTED
        return dataclasses.replace(event, source=request_id.get())
    return event


async def timing(event: Any, call: HandlerCall, call_next: CallNext) -> Any:
    """Handle middleware: wraps every handler call."""
    started = time.perf_counter()
    try:
        return await call_next(event)
    finally:
        name = call.subscription.handler.__name__
        print(f"  [{request_id.get()}] {name} took {time.perf_counter() - started:.4f} s")


bus = Dispatcher(
    publish_middleware=[stamp_source],
    handle_middleware=[timing],
    propagate_context=True,  # handlers see the publisher's contextvars
    on_lifecycle=lambda phase: print(f"dispatcher {phase.value}"),
    slow_handler_threshold=0.05,  # logs a warning for calls running longer
    on_drop=lambda event, reason: print(f"  dropped {event} ({reason.value})"),
)


@bus.on(SignedUp)
async def welcome(event: SignedUp) -> None:
    print(f"  [{request_id.get()}] welcome mail to {event.email} (source {event.source})")


@bus.on(SignedUp)
async def crm_sync(event: SignedUp) -> None:
    await anyio.sleep(0.1)  # slower than the threshold: a warning is logged


async def handle_request(n: int, email: str) -> None:
    request_id.set(f"req-{n}")  # as a web framework's middleware would
    accepted = await bus.publish(SignedUp(email))
    print(f"[req-{n}] publish -> {accepted}")


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    async with bus, anyio.create_task_group() as tg:
        tg.start_soon(handle_request, 1, "ada@example.org")
        tg.start_soon(handle_request, 2, "bot@spam.example")
        tg.start_soon(handle_request, 3, "grace@example.org")
    stats = bus.stats(SignedUp)
    print(f"handled {stats.handled}, dropped {stats.dropped}")


if __name__ == "__main__":
    anyio.run(main)
