"""The consuming side of the NATS transport: pull requests on callback
subscriptions, so every message that reaches this process is in a buffer of ours
(held in the ledger, kept alive, given back at close), never in a client's queue
that nobody reads.

Per durable consumer (one, or one per partition of a keyed type) a :class:`Pull`
has at most one pull request open (``$JS.API.CONSUMER.MSG.NEXT``, ``batch`` and
``expires``), answered on its own inbox. A request stays open up to
``fetch_wait`` and delivers messages as they are published, so a steady flow
needs no new request per message. A fetch returns what the buffers hold (at most
*room*); it asks only for what the room leaves once the buffers and the open
requests are counted, so this process never holds more than its local queue has
room for. A keyed partition's consumer allows one message in flight
(``max_ack_pending=1``): its request may ask for many, but reserves one place.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..._deadletters import DeadLetter, DeadLetterReason
from ..._errors import TransportError
from ..._transport import Verdict
from ..._wire.codec import Codec
from ..._wire.errors import WireError
from .._kit import Ledger
from .._kit.tracecontext import handler_context
from .layout import Layout, Route
from .settings import Settings
from .settle import NatsReceipt, delivery_figures

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

#: the most messages one pull request asks for
MAX_BATCH = 256
#: how long past its ``expires`` a request is taken for lost (its 408 never came)
_GRACE = 0.2
#: status codes that end a pull request (no messages, expired, conflicts)
_ENDS = {"404", "408", "409"}


class Pull:
    """One durable consumer's pull requests and the messages they brought."""

    __slots__ = ("asked", "durable", "error", "inbox", "keyed", "sub", "token", "until")

    def __init__(self, durable: str, inbox: str, keyed: bool) -> None:
        self.durable = durable
        self.inbox = inbox
        self.keyed = keyed
        #: messages the open request may still bring (0: none open)
        self.asked = 0
        #: the open request's token and when it is taken for lost (monotonic)
        self.token = ""
        self.until = 0.0
        #: why the consumer refused a request (it was deleted...), once
        self.error: str | None = None
        self.sub: Subscription | None = None

    def reserved(self) -> int:
        """Places of the room the open request may still fill here."""
        if self.asked <= 0 or time.monotonic() > self.until:
            return 0
        return 1 if self.keyed else self.asked


class Pulls:
    """A routed type's pulls in this process, and the messages they brought."""

    def __init__(self, route: Route, pulls: list[Pull]) -> None:
        self.route = route
        self.pulls = pulls
        self.buffer: deque[NatsReceipt] = deque()
        self.arrived = asyncio.Event()
        self.next = 0
        #: nobody fetches any more (the pump stopped): what arrives goes back
        self.orphaned = False

    def give_back(self) -> None:
        """Nobody fetches any more: give back what is buffered and what arrives."""
        self.orphaned = True
        while self.buffer:
            self.buffer.popleft().settle(Verdict.SHUTDOWN)


class Consumer:
    """Fetches routed types' messages for this process (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        nc: Client,
        layout: Layout,
        ledger: Ledger[NatsReceipt],
        codec: Codec,
        bus: Any,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.layout = layout
        self.ledger = ledger
        self.codec = codec
        self.bus = bus
        self._types: dict[type, Pulls] = {}
        self._tokens = itertools.count()

    async def pulls_of(self, event_type: type) -> Pulls:
        """*event_type*'s pulls, its consumers set up and subscribed to on first use."""
        pulls = self._types.get(event_type)
        if (
            pulls is not None
            and pulls.route.consumers_ready
            and pulls.route is self.layout.known(event_type)
        ):
            return pulls
        route = await self.layout.for_consume(event_type)
        if pulls is not None:
            await self._unsubscribe(pulls)
        fresh = Pulls(route, [])
        for durable, _ in route.consumers(self.settings.group):
            pull = Pull(durable, self.nc.new_inbox(), route.key is not None)
            pull.sub = await self.nc.subscribe(f"{pull.inbox}.*", cb=self._callback(fresh, pull))
            fresh.pulls.append(pull)
        self._types[event_type] = fresh
        return fresh

    async def fetch(self, event_type: type, room: int) -> list[tuple[Any, NatsReceipt]]:
        """Wait up to ``fetch_wait`` for messages; return at most *room* of them."""
        pulls = await self.pulls_of(event_type)
        pulls.orphaned = False
        try:
            return await self._fetch(pulls, room)
        except asyncio.CancelledError:  # the pump stopped: what was not handed over goes back
            pulls.give_back()
            raise

    async def _fetch(self, pulls: Pulls, room: int) -> list[tuple[Any, NatsReceipt]]:
        give_up = time.monotonic() + self.settings.fetch_wait
        while True:
            if pulls.buffer:
                return self._receive(pulls, room)
            for pull in pulls.pulls:
                if pull.error is not None:
                    error, pull.error = pull.error, None
                    self.layout.forget(pulls.route)
                    raise TransportError(
                        f"JetStream refused to deliver {pulls.route.name} ({error})"
                    )
            await self._ask(pulls, room)
            now = time.monotonic()
            ends = [p.until for p in pulls.pulls if p.asked > 0]
            wait = min([give_up, *ends]) - now
            if give_up <= now:
                return []
            pulls.arrived.clear()
            try:
                await asyncio.wait_for(pulls.arrived.wait(), max(wait, 0.001))
            except asyncio.TimeoutError:
                pass

    async def _ask(self, pulls: Pulls, room: int) -> None:
        """Open pull requests for what *room* leaves (see the module doc)."""
        budget = room - len(pulls.buffer) - sum(p.reserved() for p in pulls.pulls)
        count, route = len(pulls.pulls), pulls.route
        expires = self.settings.fetch_wait
        for i in range(count):
            if budget <= 0:
                return
            pull = pulls.pulls[(pulls.next + i) % count]
            if pull.reserved():
                continue
            batch = (
                MAX_BATCH if pull.keyed else min(budget, MAX_BATCH, self.settings.max_ack_pending)
            )
            pull.token = str(next(self._tokens))
            pull.asked = batch
            pull.until = time.monotonic() + expires + _GRACE
            budget -= 1 if pull.keyed else batch
            route.requests_until = max(route.requests_until, pull.until)
            request = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
            await self.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{route.stream(self.settings.group)}.{pull.durable}",
                request,
                reply=f"{pull.inbox}.{pull.token}",
            )
        pulls.next = (pulls.next + 1) % count

    def _callback(self, pulls: Pulls, pull: Pull) -> Callable[[Msg], Awaitable[None]]:
        on_msg = self._on_msg

        async def callback(msg: Msg) -> None:
            on_msg(pulls, pull, msg)

        return callback

    def _on_msg(self, pulls: Pulls, pull: Pull, msg: Msg) -> None:
        if not msg.reply:  # a status: the request ended (or a heartbeat)
            status = msg.headers.get("Status") if msg.headers else None
            if status in _ENDS and msg.subject == f"{pull.inbox}.{pull.token}":
                pull.asked = 0
                description = (msg.headers or {}).get("Description", "")
                if status == "409" and "deleted" in description.lower():
                    pull.error = description
                pulls.arrived.set()
            return
        if pull.asked > 0:
            pull.asked -= 1
        delivered, pending = delivery_figures(msg)
        receipt = NatsReceipt(self.ledger, pulls.route, msg, delivered)
        self.ledger.hold(receipt, receipt)
        pulls.route.pending_of[msg.subject] = pending
        if pulls.orphaned:
            receipt.settle(Verdict.SHUTDOWN)
            return
        pulls.buffer.append(receipt)
        pulls.arrived.set()

    def _receive(self, pulls: Pulls, room: int) -> list[tuple[Any, NatsReceipt]]:
        """Decode up to *room* buffered messages: the events and their receipts (the
        undecodable and the too often delivered are dead-lettered instead)."""
        route, buffer, codec = pulls.route, pulls.buffer, self.codec
        route.pending = sum(route.pending_of.values())
        out: list[tuple[Any, NatsReceipt]] = []
        max_deliver = self.settings.max_deliver
        while buffer and len(out) < room:
            receipt = buffer.popleft()
            data = receipt.msg.data
            if receipt.attempts > 1:
                route.redelivered += 1
            try:
                envelope = codec.decode(data)
                if not isinstance(envelope.event, route.event_type):
                    raise TransportError(
                        f"a {envelope.name} message on the stream of {route.name}"
                    )
            except (WireError, TransportError) as exc:
                self.bus.report_dead_letter(
                    DeadLetter(
                        bytes(data), DeadLetterReason.UNDECODABLE, exc, attempts=receipt.attempts
                    )
                )
                receipt.reject(DeadLetterReason.UNDECODABLE)
                continue
            if receipt.attempts > max_deliver:
                self.bus.report_dead_letter(
                    DeadLetter(
                        envelope.event,
                        DeadLetterReason.DELIVERY_LIMIT,
                        attempts=receipt.attempts - 1,
                    )
                )
                receipt.reject(DeadLetterReason.DELIVERY_LIMIT)
                continue
            receipt.context = handler_context(envelope.traceparent, envelope.id)
            out.append((envelope.event, receipt))
        return out

    async def stop(self) -> None:
        """Stop asking: drain every pull's subscription (the messages the server sent
        before it heard of it are given back, as the buffered ones)."""
        for pulls in self._types.values():
            pulls.give_back()
        for pulls in self._types.values():
            await self._unsubscribe(pulls)
        self._types.clear()

    async def _unsubscribe(self, pulls: Pulls) -> None:
        for pull in pulls.pulls:
            sub, pull.sub = pull.sub, None
            if sub is None:
                continue
            try:
                await asyncio.wait_for(sub.drain(), self.settings.setup_timeout)  # type: ignore[no-untyped-call]
            except Exception:  # closed or lost meanwhile: the server redelivers
                pass


class NatsSource:
    """Fetches one routed type's messages for this process (see :class:`~eventcore.Source`)."""

    def __init__(self, consumer: Consumer, event_type: type) -> None:
        self.consumer = consumer
        self.event_type = event_type

    async def fetch(self, room: int) -> Sequence[tuple[Any, NatsReceipt]]:
        """Wait up to ``fetch_wait`` for messages; return at most *room* of them."""
        return await self.consumer.fetch(self.event_type, room)
