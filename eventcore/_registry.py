"""Subscriptions by event type, resolved along the MRO.

A subscription to ``Base`` receives every event whose class has ``Base`` in its
MRO. Each concrete class's state resolves once and keeps the result until the
subscriptions change (see ``_states.TypeStates.subscriptions_changed``).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from ._config import Retry, check_retry, check_timeout
from ._errors import InvalidConfiguration, InvalidHandler
from ._events import check_event_class
from ._subscription import Subscription
from ._threads import in_thread
from ._types import E, Filter, Handler


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

    def subscribe(
        self,
        on_end: Callable[[Subscription[Any]], None],
        event_type: type[E],
        handler: Handler[E],
        filter: Filter[E] | None,
        timeout: float | None,
        retry: Retry | None,
        principal: Hashable | None,
    ) -> Subscription[E]:
        """Check the arguments of ``Dispatcher.subscribe``, make the subscription and
        add it (*on_end* hears when it ends)."""
        check_event_class(event_type, "subscribe")
        call = adapt_handler(handler)
        if filter is not None and not callable(filter):
            raise InvalidConfiguration(f"filter must be a callable returning bool, got {filter!r}")
        check_timeout("timeout", timeout)
        check_retry(retry)
        subscription = Subscription(
            on_end, event_type, handler, filter,
            timeout=timeout, retry=retry, principal=principal, call=call,
        )  # fmt: skip
        self.add(subscription)
        return subscription

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
