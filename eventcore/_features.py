"""The dispatcher-wide features that decide which paths events take (middleware,
policy, context, dead letters of unmatched events, the slow-handler watchdog), and
the services attached to each run (an outbox)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from ._authorization import Policy
from ._errors import InvalidConfiguration
from ._middleware import PublishMiddleware


class Features:
    """What is switched on, and the three decisions it implies for every type."""

    __slots__ = (
        "attached",
        "dead_letter_unmatched",
        "envelope_all",
        "full_delivery",
        "outbox",
        "policy",
        "propagate_context",
        "publish_chain",
        "slow_handler_threshold",
        "slow_publish",
    )

    def __init__(
        self,
        policy: Policy | None,
        propagate_context: bool,
        dead_letter_unmatched: bool,
        slow_handler_threshold: float | None,
    ) -> None:
        self.policy = policy
        self.propagate_context = propagate_context
        self.dead_letter_unmatched = dead_letter_unmatched
        self.slow_handler_threshold = slow_handler_threshold
        self.publish_chain: tuple[PublishMiddleware, ...] = ()
        #: every event travels in an Envelope (its id, time, context)
        self.envelope_all = False
        #: every type needs the full delivery path
        self.full_delivery = False
        #: every publish takes the slow path (middleware, policy, envelope)
        self.slow_publish = False
        #: async context managers run for each run's life (an outbox and its relay)
        self.attached: tuple[AbstractAsyncContextManager[Any], ...] = ()
        #: the attached service that ``publish(event, session=...)`` writes to
        self.outbox: Any = None

    def use_publish_chain(self, chain: tuple[PublishMiddleware, ...]) -> None:
        """Run *chain* on every event published from now on."""
        self.publish_chain = chain

    def attach(self, service: AbstractAsyncContextManager[Any]) -> None:
        """``bus.attach(service)``: run the async context manager *service* for each
        run's life, from the next run on: entered once the dispatcher started (an
        error there leaves ``async with``), left when it begins to close, before the
        queues drain. One with ``publish(event, session=...)`` (an
        ``eventcore.outbox.Outbox``) also takes the dispatcher's
        ``publish(event, session=...)``."""
        if service not in self.attached:
            self.attached = (*self.attached, service)
        if callable(getattr(service, "publish", None)):
            self.outbox = service

    async def publish_in_transaction(self, event: object, session: Any) -> bool:
        """``publish(event, session=...)``: a row of the attached outbox, written in the
        caller's transaction; it leaves once that transaction commits."""
        if self.outbox is None:
            raise InvalidConfiguration(
                f"publish({type(event).__qualname__}(...), session=...) needs an outbox: "
                "eventcore.outbox.Outbox(bus) (pip install 'eventcore-py[sql]')"
            )
        await self.outbox.publish(event, session=session)
        return True

    def use_context(self, propagate: bool) -> None:
        """Run handlers in a copy of the publisher's context (or not)."""
        self.propagate_context = propagate

    def settle(self, handle_chain: bool) -> None:
        """Decide the paths from the features in use (*handle_chain*: any handle
        middleware installed)."""
        self.envelope_all = handle_chain or self.propagate_context
        self.full_delivery = (
            handle_chain or self.dead_letter_unmatched or self.slow_handler_threshold is not None
        )
        self.slow_publish = (
            bool(self.publish_chain) or self.policy is not None or self.envelope_all
        )
