"""The delivery plan of a type: what its workers call, decided once per change.

A :class:`DeliveryPlan` is immutable; :func:`build_plan` is the one place that
makes one (when subscriptions, the policy, the type's settings or the
dispatcher's features change), and the type's state swaps it whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._config import TypeConfig
from ._subscription import Subscription

#: (what to await, filter, the handler as given) of one subscription
Entry = tuple[Callable[[Any], Any], Callable[[Any], bool] | None, Callable[..., Any]]


class DeliveryPlan:
    """The subscriptions of one type, unpacked the ways the serving loops read them."""

    __slots__ = ("awaits", "entries", "plain", "single", "subs")

    def __init__(
        self,
        subs: tuple[Subscription[Any], ...],
        entries: tuple[Entry, ...],
        awaits: tuple[Callable[[Any], Any], ...] | None,
        single: Callable[[Any], Any] | None,
        plain: bool,
    ) -> None:
        self.subs = subs
        #: (what to await, filter, the handler as given) of each subscription
        self.entries = entries
        #: what to await of each subscription when none has a filter (else None)
        self.awaits = awaits
        #: what to await when there is exactly one subscription, without a filter
        self.single = single
        #: whether workers may call handlers inline (no key, timeout, retry, middleware)
        self.plain = plain

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, name):
            raise AttributeError(f"a DeliveryPlan is immutable: build a new one ({name})")
        object.__setattr__(self, name, value)

    def handler_of(self, call: Callable[[Any], Any]) -> Callable[..., Any]:
        """The handler as given whose subscription awaits *call* (for failure reports)."""
        for awaited, _, handler in self.entries:
            if awaited is call:
                return handler
        return call  # unsubscribed meanwhile: its adapter is the best name left


EMPTY_PLAN = DeliveryPlan((), (), (), None, True)


def build_plan(
    subs: Sequence[Subscription[Any]], config: TypeConfig, full_delivery: bool
) -> DeliveryPlan:
    """The plan for *subs* (already resolved and authorized) under *config*.

    :param full_delivery: a dispatcher-wide feature (handle middleware, dead letters
        of unmatched events, the slow-handler watchdog) needs the full delivery path
    """
    subs = tuple(subs)
    entries = tuple([(s.call, s.filter, s.handler) for s in subs])
    filtered = any(s.filter is not None for s in subs)
    awaits = None if filtered else tuple([s.call for s in subs])
    single = subs[0].call if len(subs) == 1 and not filtered else None
    plain = not (
        full_delivery
        or config.key is not None
        or config.handler_timeout is not None
        or config.retry is not None
        or any(s.timeout is not None or s.retry is not None for s in subs)
    )
    return DeliveryPlan(subs, entries, awaits, single, plain)
