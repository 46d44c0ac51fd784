"""Settling delivered messages on RabbitMQ, one batch at a time (the kit's settler
calls :meth:`Settle.apply`):

* handled -> ``basic.ack``;
* shutdown before it was handled -> ``basic.nack`` with requeue (another consumer
  gets it at once; RabbitMQ counts it as a delivery);
* failed after the local retries -> a copy to the dead-letter exchange with the
  reason, confirmed, then ``basic.ack`` (``basic.nack`` with requeue if the copy
  was not confirmed);
* refused (undecodable, delivery limit, rejected) -> the same copy, then
  ``basic.ack``; if the copy was not confirmed, ``basic.reject`` without requeue,
  so RabbitMQ's own dead-lettering takes it (``x-death`` header).

A message whose channel is gone (the connection was lost) is left to RabbitMQ,
which delivers it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._deadletters import DeadLetterReason
from ..._transport import Verdict
from .._kit import Ledger, Settlement
from .amqp import spec

if TYPE_CHECKING:
    from .consume import RabbitReceipt
    from .layout import Settings
    from .link import Link

#: the headers of a dead letter written by eventcore
REASON, GROUP, DELIVERIES = "eventcore-reason", "eventcore-group", "eventcore-deliveries"


class Tally:
    """The delivery tags settled on one consuming channel: every tag up to ``floor``,
    and those above it in ``above``. When the floor passes every handled message of
    a batch, one ``basic.ack`` (``multiple``) with the batch's highest tag covers
    them: every tag below it is settled, so the outstanding ones are exactly these
    (RabbitMQ refuses a multiple ack whose own tag was acknowledged already)."""

    __slots__ = ("above", "channel", "floor")

    def __init__(self) -> None:
        self.channel: Any = None
        self.floor = 0
        self.above: set[int] = set()

    def on(self, channel: Any) -> None:
        """Count tags of *channel* (a new channel numbers its deliveries from 1)."""
        if channel is not self.channel:
            self.channel, self.floor, self.above = channel, 0, set()

    def settled(self, tag: int) -> None:
        self.above.add(tag)

    def advance(self) -> int:
        """Move the floor over the settled tags; the new floor."""
        floor, above = self.floor, self.above
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self.floor = floor
        return floor


@dataclass(frozen=True)
class Settle:
    """Applies batches of verdicts (see the module doc) for the transport of *group*."""

    _link: Link
    _ledger: Ledger[RabbitReceipt]
    _settings: Settings
    _group: str
    _publish_timeout: float
    _tally: Tally = field(default_factory=Tally)

    async def apply(self, batch: list[Settlement[RabbitReceipt]]) -> None:
        """Send one batch of verdicts (the kit's settler retries a batch that raises):
        nacks and dead letters one by one, then the acks of the handled messages, in
        one frame where the tags allow it."""
        channel = self._link.consuming
        tally = self._tally
        tally.on(channel)
        handled, letters = [], []
        for settlement in batch:
            receipt = settlement.receipt
            if receipt.channel is not channel or channel is None or channel.is_closed:
                self._ledger.drop(receipt)  # its channel is gone: RabbitMQ redelivers it
                continue
            verdict = settlement.verdict
            if verdict is Verdict.HANDLED:
                handled.append(receipt)
            elif verdict is Verdict.SHUTDOWN:
                await channel.basic_nack(receipt.tag, requeue=True, wait=False)
                receipt.route.figures["nacked"] += 1
                self._ledger.done(receipt)
                tally.settled(receipt.tag)
            else:
                letters.append(settlement)
        if letters:
            await asyncio.gather(*(self._dead_letter(s) for s in letters))
        if handled:
            assert channel is not None
            await self._ack(channel, handled)

    async def _ack(self, channel: Any, handled: list[RabbitReceipt]) -> None:
        tally = self._tally
        for receipt in handled:
            tally.settled(receipt.tag)
        floor = tally.advance()
        top = max(receipt.tag for receipt in handled)
        if top <= floor:  # everything below is settled; RabbitMQ wants top outstanding
            await channel.basic_ack(top, multiple=True, wait=False)
        else:
            for receipt in handled:
                await channel.basic_ack(receipt.tag, wait=False)
        for receipt in handled:
            receipt.route.figures["acked"] += 1
            self._ledger.done(receipt)

    async def _dead_letter(self, settlement: Settlement[RabbitReceipt]) -> None:
        receipt, verdict = settlement.receipt, settlement.verdict
        route, channel = receipt.route, receipt.channel
        if verdict is Verdict.FAILED:
            reason = DeadLetterReason.HANDLER_FAILED.value
        else:
            reason = settlement.note or DeadLetterReason.REJECTED.value
        copied = await self._copy(receipt, reason)
        if copied:
            route.figures["dead_lettered"] += 1
            await channel.basic_ack(receipt.tag, wait=False)
            if verdict is Verdict.FAILED:
                route.figures["acked"] += 1
            else:
                route.figures["terminated"] += 1
        elif verdict is Verdict.FAILED:  # handled again later, here or elsewhere
            await channel.basic_nack(receipt.tag, requeue=True, wait=False)
            route.figures["nacked"] += 1
        else:  # RabbitMQ's own dead-lettering takes it
            await channel.basic_reject(receipt.tag, requeue=False, wait=False)
            route.figures["terminated"] += 1
        self._ledger.done(receipt)
        self._tally.settled(receipt.tag)

    async def _copy(self, receipt: RabbitReceipt, reason: str) -> bool:
        """Write the message to the dead-letter exchange; whether RabbitMQ confirmed it."""
        message = receipt.message
        original = message.header.properties
        properties = spec.Basic.Properties(
            message_id=original.message_id,
            content_type=original.content_type,
            message_type=original.message_type,
            delivery_mode=2,
            headers={
                REASON: reason,
                GROUP: self._group,
                DELIVERIES: receipt.attempts,
            },
        )
        try:
            channel = await self._link.publisher()
            await channel.basic_publish(
                message.body,
                exchange=self._settings.dead_exchange,
                routing_key=receipt.route.name,
                properties=properties,
                timeout=self._publish_timeout,
                wait=False,
            )
        except Exception:
            return False
        return True
