"""Middleware around publishing and around each handler call.

*Publish middleware* runs in the publisher's task before the event is queued, in
the order given. Each one takes the event and returns the event to pass on: the
same one, an enriched copy, or an event of another type (a reroute) - or
``None`` to refuse it (``publish`` returns False, the event counts as dropped,
``on_drop`` hears ``DropReason.REJECTED``). Raising refuses it too; the
exception reaches the publisher. It is synchronous so that ``publish_nowait``
and other threads go through the same chain.

With ``propagate_context=True`` the chain runs inside the copy of the publisher's
``contextvars`` that travels with the event (``in_event_context()`` is true there):
what a publish middleware sets in it - the current span of a "send" trace, say -
the event's handlers see, and the publisher does not.

*Handle middleware* wraps every handler call, the first given outermost: it
receives the event, a :class:`HandlerCall` (the subscription, the event's id,
when it was accepted, the attempt number), and ``call_next(event)`` which runs
the rest of the chain and the handler; what it returns is the handler's result.
Logging, tracing and metrics belong here. With handle middleware installed,
every event travels in an envelope that carries its id and acceptance time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from ._subscription import Subscription

PublishMiddleware = Callable[[Any], Any]
"""``middleware(event) -> event | None``: pass on, enrich, reroute, or (None) refuse."""

CallNext = Callable[[Any], Awaitable[Any]]
"""Runs the rest of the handle chain and the handler for the given event."""


@dataclass(frozen=True)
class HandlerCall:
    """What handle middleware knows about the call it wraps.

    :ivar subscription: the subscription whose handler is called
    :ivar event_id: a number unique to the event within this process
    :ivar accepted_at: ``anyio.current_time()`` when the event was accepted
    :ivar started_at: ``anyio.current_time()`` when the event's delivery began
        (``started_at - accepted_at`` is its time in the queue)
    :ivar attempt: 1 for the first call, 2 and more for retries
    :ivar first: whether this is the first handler call of the event's delivery
    """

    subscription: Subscription[Any]
    event_id: int
    accepted_at: float
    started_at: float
    attempt: int
    first: bool


class HandleMiddleware(Protocol):
    """Wraps each handler call: ``await middleware(event, call, call_next)``."""

    def __call__(self, event: Any, call: HandlerCall, call_next: CallNext, /) -> Awaitable[Any]:
        """Do something around ``await call_next(event)`` and return its result."""
        ...


_event_context: ContextVar[bool] = ContextVar("eventcore_event_context", default=False)


def in_event_context() -> bool:
    """Whether a publish middleware runs inside the context copied for the event's
    handlers (``propagate_context=True``), where it may set contextvars for them."""
    return _event_context.get()


def apply_chain_in_copy(chain: Sequence[PublishMiddleware], event: Any) -> Any:
    """:func:`apply_publish_chain`, run inside a context copied for the event."""
    _event_context.set(True)
    try:
        return apply_publish_chain(chain, event)
    finally:
        _event_context.set(False)


def apply_publish_chain(chain: Sequence[PublishMiddleware], event: Any) -> Any:
    """Run *event* through *chain*; None as soon as one middleware refuses it."""
    for middleware in chain:
        event = middleware(event)
        if event is None:
            return None
    return event


def chain_call(chain: Sequence[HandleMiddleware], call: HandlerCall) -> CallNext:
    """The handler of *call* with every handle middleware around it, the first outermost."""
    step: CallNext = call.subscription.call
    for middleware in reversed(chain):
        step = _link(middleware, call, step)
    return step


def _link(middleware: HandleMiddleware, call: HandlerCall, call_next: CallNext) -> CallNext:
    async def run(event: Any) -> Any:
        return await middleware(event, call, call_next)

    return run
