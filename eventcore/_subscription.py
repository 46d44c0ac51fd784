"""One subscription: a handler registered for an event type (a leaf module)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic

from ._config import Retry
from ._errors import InvalidHandler
from ._types import E, Filter, Handler


class Subscription(Generic[E]):
    """A handler registered for an event type (and its subclasses), with an optional filter."""

    __slots__ = (
        "_on_end",
        "call",
        "event_type",
        "filter",
        "handler",
        "principal",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        on_end: Callable[[Subscription[Any]], None],
        event_type: type[E],
        handler: Handler[E],
        filter: Filter[E] | None = None,
        *,
        call: Callable[[Any], Awaitable[Any]],
        timeout: float | None = None,
        retry: Retry | None = None,
        principal: Hashable | None = None,
    ) -> None:
        #: tells the dispatcher the subscription ended (None once it has)
        self._on_end: Callable[[Subscription[Any]], None] | None = on_end
        self.event_type = event_type
        self.handler = handler
        #: what the workers await: the handler, or its thread wrapper for a plain ``def``
        self.call = call
        self.filter = filter
        #: cancel the handler after this many seconds (None: the type's default)
        self.timeout = timeout
        #: retry policy (None: the type's default)
        self.retry = retry
        #: who subscribed, for the authorization policy
        self.principal = principal

    @property
    def active(self) -> bool:
        """Whether the subscription still receives events."""
        return self._on_end is not None

    def unsubscribe(self) -> None:
        """Stop receiving events, including those already queued. Idempotent."""
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(self)

    def __repr__(self) -> str:
        name = getattr(self.handler, "__qualname__", repr(self.handler))
        state = "" if self.active else ", inactive"
        return f"<Subscription {self.event_type.__qualname__} -> {name}{state}>"


def end_subscription(subscription: object) -> None:
    """``Dispatcher.unsubscribe``: end *subscription*, or refuse what is not one."""
    if not isinstance(subscription, Subscription):
        raise InvalidHandler(
            f"unsubscribe() takes the Subscription that subscribe() returned, got {subscription!r}"
        )
    subscription.unsubscribe()
