"""Subscriptions by event type, resolved along the MRO.

A subscription to ``Base`` receives every event whose class has ``Base`` in its
MRO. Each concrete class's state resolves once and keeps the result until the
subscriptions change (see ``Dispatcher._subscriptions_changed``).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic

from ._config import Retry
from ._errors import InvalidHandler
from ._threads import in_thread
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
        timeout: float | None = None,
        retry: Retry | None = None,
        principal: Hashable | None = None,
        call: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> None:
        #: tells the dispatcher the subscription ended (None once it has)
        self._on_end: Callable[[Subscription[Any]], None] | None = on_end
        self.event_type = event_type
        self.handler = handler
        #: what the workers await: the handler, or its thread wrapper for a plain ``def``
        self.call: Callable[[Any], Awaitable[Any]] = call or adapt_handler(handler)
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


def adapt_handler(handler: Callable[..., Any]) -> Callable[[Any], Awaitable[Any]]:
    """What the workers call for *handler*: itself when it is async, else a wrapper that
    runs it in a worker thread (see ``_threads``); refuses what is no handler at all."""
    if inspect.iscoroutinefunction(handler):
        return handler
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - instances with async __call__
    if not isinstance(handler, type) and inspect.iscoroutinefunction(call):
        return handler
    if inspect.isawaitable(handler):
        raise InvalidHandler(
            f"{handler!r} is a coroutine, not a handler: pass the async function itself, "
            "without calling it (`subscribe(T, handler)`, not `subscribe(T, handler())`)"
        )
    if inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler):
        raise InvalidHandler(
            f"handler {handler!r} is a generator function: a handler is an `async def` "
            "function (or a plain `def`, run in a worker thread) that returns"
        )
    if isinstance(handler, type) or not callable(handler):
        raise InvalidHandler(
            f"handler {handler!r} is not callable: pass an `async def` function, or a plain "
            "function (eventcore runs plain functions in a worker thread)"
        )
    return in_thread(handler)


class Registry:
    """All subscriptions, indexed by event type, and the MRO resolution cache."""

    def __init__(self) -> None:
        self._by_type: dict[type, list[Subscription[Any]]] = {}
        #: subscription -> its sequence number, to keep subscription order across types
        self._order: dict[Subscription[Any], int] = {}
        self._counter = itertools.count()

    def add(self, subscription: Subscription[Any]) -> None:
        """Register *subscription* after every existing one."""
        self._by_type.setdefault(subscription.event_type, []).append(subscription)
        self._order[subscription] = next(self._counter)

    def remove(self, subscription: Subscription[Any]) -> None:
        """Forget *subscription* (no error when it is already gone)."""
        if self._order.pop(subscription, None) is None:
            return
        subscriptions = self._by_type[subscription.event_type]
        subscriptions.remove(subscription)
        if not subscriptions:
            del self._by_type[subscription.event_type]

    def resolve(self, event_class: type) -> tuple[Subscription[Any], ...]:
        """The subscriptions that receive events of *event_class*, in subscription order.

        Walks the MRO (not every subscription). Not cached here: each type's state
        keeps what it resolved until subscriptions change, and a cache keyed by class
        would keep classes alive.
        """
        by_type = self._by_type
        matched = [s for klass in event_class.__mro__ for s in by_type.get(klass, ())]
        if len(matched) > 1:
            matched.sort(key=self._order.__getitem__)
        return tuple(matched)

    def all(self) -> tuple[Subscription[Any], ...]:
        """Every subscription, in subscription order."""
        return tuple(self._order)

    def __len__(self) -> int:
        return len(self._order)
