"""The keep-alive: while a message is held here (queued locally or being handled),
refresh it on its broker often enough that the broker never hands it to another
consumer meanwhile (JetStream: ``in_progress`` before ``ack_wait``; Redis: reset
the entry's idle time before ``claim_idle``).

A transport gives a coroutine function ``refresh(stale)`` that refreshes the
given (key, receipt) pairs; :meth:`KeepAlive.run` calls it every *every* seconds
with the messages held and not refreshed for *every* seconds, so a message goes
at most ``2 * every`` without a refresh: choose ``every`` below half the
broker's limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .common import redact
from .ledger import Ledger

R = TypeVar("R")


class KeepAlive(Generic[R]):
    """Refreshes a ledger's held messages (see the module doc)."""

    def __init__(
        self,
        ledger: Ledger[R],
        refresh: Callable[[list[tuple[Hashable, R]]], Awaitable[None]],
        *,
        every: float,
        logger: logging.Logger,
    ) -> None:
        self._ledger = ledger
        self._refresh = refresh
        self.every = every
        self._logger = logger

    async def run(self) -> None:
        """Refresh held messages every ``every`` seconds (a crew job)."""
        while True:
            await asyncio.sleep(self.every)
            await self.once()

    async def once(self) -> None:
        """Refresh the messages not refreshed for ``every`` seconds, now."""
        stale = self._ledger.stale(self.every)
        if not stale:
            return
        try:
            await self._refresh(stale)
        except Exception as exc:  # the next round tries again
            self._logger.debug(
                "refreshing %d held message(s) failed: %s", len(stale), redact(str(exc))
            )
