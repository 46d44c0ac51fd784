"""Middleware around publishing and around each handler call.

*Publish middleware* runs in the publisher's task before the event is queued, in
the order given. Each one takes the event and returns the event to pass on: the
same one, an enriched copy, or an event of another type (a reroute) - or
``None`` to refuse it (``publish`` returns False, the event counts as dropped,
``on_drop`` hears ``DropReason.REJECTED``). Raising refuses it too; the
exception reaches the publisher. It is synchronous so that ``publish_nowait``
and other threads go through the same chain.

*Handle middleware* wraps every handler call, the first given outermost: it
receives the event, the subscription, and ``call_next(event)`` which runs the
rest of the chain and the handler; what it returns is the handler's result.
Logging, tracing and metrics belong here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._registry import Subscription

PublishMiddleware = Callable[[Any], Any]
"""``middleware(event) -> event | None``: pass on, enrich, reroute, or (None) refuse."""

CallNext = Callable[[Any], Awaitable[Any]]
"""Runs the rest of the handle chain and the handler for the given event."""


class HandleMiddleware(Protocol):
    """Wraps each handler call: ``await middleware(event, subscription, call_next)``."""

    def __call__(
        self, event: Any, subscription: Subscription[Any], call_next: CallNext, /
    ) -> Awaitable[Any]:
        """Do something around ``await call_next(event)`` and return its result."""
        ...


def apply_publish_chain(chain: Sequence[PublishMiddleware], event: Any) -> Any:
    """Run *event* through *chain*; None as soon as one middleware refuses it."""
    for middleware in chain:
        event = middleware(event)
        if event is None:
            return None
    return event


def wrap_handler(
    chain: Sequence[HandleMiddleware], subscription: Subscription[Any]
) -> Callable[[Any], Awaitable[Any]]:
    """The handler of *subscription* with every handle middleware around it."""
    call: Callable[[Any], Awaitable[Any]] = subscription.handler
    for middleware in reversed(chain):
        call = _link(middleware, subscription, call)
    return call


def _link(
    middleware: HandleMiddleware, subscription: Subscription[Any], call_next: CallNext
) -> CallNext:
    async def call(event: Any) -> Any:
        return await middleware(event, subscription, call_next)

    return call
