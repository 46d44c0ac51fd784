"""Settling on JetStream: a fetched message's receipt, and sending verdicts (the
ack logic of the NATS transport, all of it here).

handled -> ``+ACK``; failed after the local retries -> dead letter, ``+ACK`` (or
``-NAK`` if the dead-letter stream refused it); shutdown -> ``-NAK`` (another
process takes it once this process's open pull requests ended, at most
``fetch_wait`` later); rejected (undecodable, unknown, delivered too often)
-> dead letter, ``+TERM``. Held messages get ``+WPI`` (in progress) from the
keep-alive. Acks are plain publishes to the message's ack subject, a batch of
them per settler round; dead letters are JetStream writes with their
acknowledgement awaited.

While the dispatcher shuts down, the give-backs (shutdown naks) are *held*: kept
in the ledger (kept alive) and sent only by :meth:`Settling.release`, once the
closing consumer's pull requests all ended (see :mod:`.consume`), as plain naks.
A delayed nak would fall due just as this process's requests expire: a server
before 2.10.14 (nats-server #5305) may then drop the redelivery from its queue,
and the message waits ``ack_wait``. Sent after the requests ended, a plain nak is
redelivered at once to another process's request, or to the next one opened.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ..._deadletters import DeadLetterReason
from ..._transport import Verdict
from .._kit import Ledger, Settlement, redact
from .layout import Layout, Route
from .publish import Publisher

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

logger = logging.getLogger("eventcore.nats")

_ACK, _NAK, _TERM, _PROGRESS = b"+ACK", b"-NAK", b"+TERM", b"+WPI"


class NatsReceipt:
    """Settles one fetched JetStream message (see :class:`~eventcore.Receipt`)."""

    __slots__ = ("attempts", "context", "ledger", "msg", "route")

    def __init__(self, ledger: Ledger[NatsReceipt], route: Route, msg: Msg, attempts: int) -> None:
        self.ledger = ledger
        self.route = route
        self.msg = msg
        #: deliveries of the message so far, this one included
        self.attempts = attempts
        #: the handlers run in it: the publisher's trace context, when it sent one
        self.context: contextvars.Context | None = None

    def settle(self, verdict: Verdict) -> None:
        """Queue the ack / nak / term for this message (sent on the transport's task)."""
        self.ledger.settle(self, verdict)

    def reject(self, reason: DeadLetterReason) -> None:
        """Refuse the message for good (dead letter, then term), for *reason*."""
        self.ledger.settle(self, Verdict.REJECTED, reason.value)


class Settling:
    """Sends a batch of verdicts and refreshes held messages (the settler's and the
    keep-alive's work for JetStream)."""

    def __init__(
        self,
        nc: Client,
        group: str,
        ledger: Ledger[NatsReceipt],
        layout: Layout,
        publisher: Publisher,
        closing: Callable[[], bool],
    ) -> None:
        self.nc = nc
        self.group = group
        self.ledger = ledger
        self.layout = layout
        self.publisher = publisher
        #: whether the dispatcher shuts down (its give-backs are then held)
        self.closing = closing
        #: give-backs held until the closing consumer's requests ended
        self.held: dict[Hashable, Settlement[NatsReceipt]] = {}
        #: :meth:`release` was called: give-backs go at once
        self.released = False

    def release(self) -> None:
        """The closing consumer's pull requests all ended: queue the held give-backs
        again (sent as plain naks, see the module doc)."""
        self.released = True
        held, self.held = self.held, {}
        self.ledger.put_back(held.values())

    async def apply(self, batch: list[Settlement[NatsReceipt]]) -> None:
        """Send the verdicts of *batch* (the settler's ``apply``)."""
        publish = self.nc.publish
        for settlement in batch:
            key, receipt, verdict, note = settlement
            route, reply = receipt.route, receipt.msg.reply
            if not self.ledger.holds(key):  # sent already (a batch put back twice)
                continue
            if verdict is Verdict.SHUTDOWN and not self.released and self.closing():
                self.held[key] = settlement  # still held in the ledger: kept alive
                continue
            try:
                if verdict is Verdict.HANDLED:
                    await publish(reply, _ACK)
                    route.acked += 1
                elif verdict is Verdict.SHUTDOWN:
                    await publish(reply, _nak(route))
                    route.nacked += 1
                elif verdict is Verdict.FAILED:
                    if await self._dead_letter(receipt, DeadLetterReason.HANDLER_FAILED.value):
                        await publish(reply, _ACK)
                        route.acked += 1
                    else:
                        await publish(reply, _NAK)
                        route.nacked += 1
                else:
                    await self._dead_letter(receipt, note or DeadLetterReason.REJECTED.value)
                    await publish(reply, _TERM)
                    route.terminated += 1
            except Exception as exc:  # JetStream redelivers what it never heard of
                logger.warning(
                    "settling a %s message failed (%s): it will be redelivered",
                    route.name,
                    redact(str(exc)),
                )
            self.ledger.done(key)

    async def refresh(self, stale: list[tuple[Hashable, NatsReceipt]]) -> None:
        """``in_progress`` for each held message (the keep-alive's ``refresh``)."""
        for _, receipt in stale:
            await self.nc.publish(receipt.msg.reply, _PROGRESS)

    async def _dead_letter(self, receipt: NatsReceipt, reason: str) -> bool:
        """Write the message to the dead-letter stream; False if JetStream refused it."""
        route, msg = receipt.route, receipt.msg
        subject = await self.layout.ensure_dead_letters()
        headers = {
            "Eventcore-Reason": reason,
            "Eventcore-Group": self.group,
            "Eventcore-Deliveries": str(receipt.attempts),
            "Nats-Msg-Id": f"{route.stream(self.group)}:{stream_sequence(msg)}",
        }
        reply = await self.publisher.request(
            f"{subject}.{route.name}", msg.data, headers, route.event_type
        )
        if "error" in reply:
            logger.error(
                "the dead-letter stream refused a %s message: %s",
                route.name,
                reply["error"].get("description"),
            )
            return False
        route.dead_lettered += 1
        return True


def _nak(route: Route) -> bytes:
    """A nak that makes the message wait until this process's pull requests of its
    route ended: redelivered now, it could go to a request of ours that nobody
    reads any more (until ``ack_wait``). A delayed nak keeps the message pending
    meanwhile, so a keyed partition's order holds."""
    delay = route.requests_until - time.monotonic()
    if delay <= 0:
        return _NAK
    return b'-NAK {"delay": %d}' % int(delay * 1e9)


def delivery_figures(msg: Msg) -> tuple[int, int]:
    """(deliveries, pending) of a JetStream message, read from its ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``, or
    the longer form with domain and account); nats-py's ``metadata`` also builds a
    datetime per message, which costs more than the rest of the receipt."""
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[4]), int(tokens[8])
        if len(tokens) >= 11:
            return int(tokens[6]), int(tokens[10])
    except ValueError:
        pass
    metadata = msg.metadata
    return metadata.num_delivered, metadata.num_pending


def stream_sequence(msg: Msg) -> Any:
    """The message's sequence number in its stream (from its ack subject)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:
        return tokens[5]
    if len(tokens) >= 11:
        return tokens[7]
    return msg.metadata.sequence.stream
