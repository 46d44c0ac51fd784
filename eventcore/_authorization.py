"""Who may publish which event types, and which subscriptions may receive them.

Install a policy with ``Dispatcher(policy=...)``; from then on everything is
denied unless the policy allows it. The publishing principal comes from
``publish(..., principal=...)`` or, when not given, from :func:`acting_as` (a
context variable, so it follows a request through its tasks). A subscription's
principal is given at ``subscribe(..., principal=...)``. Receive decisions are
made once per concrete event type and cached, so they cost nothing per event; a
subscription that may not receive a type never sees it, also not through a
subscription to one of its base classes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

Principal = Hashable
"""Whoever publishes or subscribes: a user id, a service name, a role."""

_principal: ContextVar[Principal | None] = ContextVar("eventcore_principal", default=None)


@runtime_checkable
class Policy(Protocol):
    """An authorization policy. Both methods must be fast and free of side effects."""

    def may_publish(self, principal: Principal | None, event_type: type) -> bool:
        """Whether *principal* (None: anonymous) may publish events of *event_type*."""
        ...

    def may_receive(self, principal: Principal | None, event_type: type) -> bool:
        """Whether a subscription made by *principal* may receive events of *event_type*."""
        ...


class Grants:
    """A policy from two tables: principal -> the event types it may publish / receive.

    A grant on a class covers its subclasses. Anything not granted is denied.

    :param publish: for each principal, the event types it may publish
    :param receive: for each principal, the event types its subscriptions may receive
    """

    def __init__(
        self,
        publish: Mapping[Principal, Iterable[type]] | None = None,
        receive: Mapping[Principal, Iterable[type]] | None = None,
    ) -> None:
        self._publish = {p: tuple(ts) for p, ts in (publish or {}).items()}
        self._receive = {p: tuple(ts) for p, ts in (receive or {}).items()}

    def may_publish(self, principal: Principal | None, event_type: type) -> bool:
        """True when *event_type* is a subclass of a type granted to *principal*."""
        return issubclass(event_type, self._publish.get(principal, ()))

    def may_receive(self, principal: Principal | None, event_type: type) -> bool:
        """True when *event_type* is a subclass of a type granted to *principal*."""
        return issubclass(event_type, self._receive.get(principal, ()))


@contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Publish as *principal* inside the ``with`` block (and in tasks started there)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


def current_principal() -> Principal | None:
    """The principal set by the innermost :func:`acting_as`, or None."""
    return _principal.get()
