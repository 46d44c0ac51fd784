"""The settler: sends the verdicts queued in a :class:`~.ledger.Ledger` to the
broker in batches, on the transport's own task, retrying a batch that failed
with a growing pause; at close, :meth:`Settler.drain` sends what is left.

A transport gives it one coroutine function, ``apply(batch)``, that sends a
batch of :class:`~.ledger.Settlement` (acks, naks, dead letters) and calls
``ledger.done(key)`` for each one the broker has. ``apply`` raising puts the
batch back (those still held) and the settler tries again after a pause: the
acks of a lost connection go out once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

from .common import redact
from .ledger import Ledger, Settlement

R = TypeVar("R")

#: the first and the longest pause after a batch failed (s)
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0


class Settler(Generic[R]):
    """Sends a ledger's queued verdicts with *apply* (see the module doc).

    :param limit: the most verdicts in one batch (None: all queued)
    """

    def __init__(
        self,
        ledger: Ledger[R],
        apply: Callable[[list[Settlement[R]]], Awaitable[None]],
        *,
        logger: logging.Logger,
        limit: int | None = None,
    ) -> None:
        self._ledger = ledger
        self._apply = apply
        self._logger = logger
        self._limit = limit
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Send verdicts as they are queued (a crew job: runs until cancelled)."""
        pause = BACKOFF_FIRST
        while True:
            await self._ledger.wanted.wait()
            if await self.flush():
                pause = BACKOFF_FIRST
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_MAX)

    async def flush(self) -> bool:
        """Send one batch of what is queued; False if the broker did not take it."""
        async with self._lock:  # the settler's task and close() never interleave
            batch = self._ledger.take(self._limit)
            if not batch:
                return True
            try:
                await self._apply(batch)
            except Exception as exc:
                self._ledger.put_back(batch)
                self._logger.warning(
                    "settling %d message(s) failed (%s); retrying", len(batch), redact(str(exc))
                )
                return False
            except BaseException:
                self._ledger.put_back(batch)  # cancelled: sent again later, or at close
                raise
            return True

    async def drain(self, timeout: float) -> int:
        """Send everything queued, for at most *timeout* seconds; how many verdicts
        could not be sent (their messages will be delivered again)."""
        with anyio.move_on_after(timeout):
            while True:
                sent = await self.flush()  # after the batch on its way, if one is
                if not self._ledger.queued:
                    break
                if not sent:
                    await anyio.sleep(BACKOFF_FIRST)
        left = self._ledger.queued
        if left:
            self._logger.warning(
                "%d verdict(s) could not be sent before closing: those messages will be "
                "delivered again",
                left,
            )
        return left
