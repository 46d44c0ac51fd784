"""The consuming side of the NATS transport: pull requests on callback
subscriptions, so every message that reaches this process is in a buffer of ours
(held in the ledger, kept alive, given back at close), never in a client's queue
that nobody reads.

Per durable consumer (one, or one per partition of a keyed type) a :class:`Pull`
has at most one pull request open (``$JS.API.CONSUMER.MSG.NEXT``, ``batch`` and
``expires``), answered on its own inbox. A request stays open up to
``fetch_wait`` (at most :data:`MAX_EXPIRES`) and delivers messages as they are
published, so a steady flow needs no new request per message. A fetch returns
what the buffers hold (at most *room*); it asks only for what the room leaves
once the buffers and the open requests are counted, so this process never holds
more than its local queue has room for. A keyed partition's consumer allows one
message in flight (``max_ack_pending=1``): its request may ask for many, but
reserves one place.

An inbox is unsubscribed only once nothing of its requests can be on its way
(:meth:`Consumer.stop`): JetStream checks a request's interest when it picks a
message for it, then sends the message; a message picked before the unsubscribe
reached the server and sent after it goes nowhere, yet counts as delivered, so
it waited ``ack_wait`` (and blocked a keyed partition meanwhile). A request ends
with a status (``408`` at ``expires``...), sent after its messages, or when its
batch was delivered. A busy or lagging server may send its ``408`` late, or
never (an expired request is then dropped silently): so once the request has
expired on the server (a flush, then ``expires``), a *barrier* is sent, a pull
request the server refuses at once (``400``): it goes out after everything the
consumer picked before, so once its refusal is here, nothing else is on its way.
Closing waits at most :data:`MAX_EXPIRES` and two round trips.
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
#: the longest one pull request stays open (s): closing waits for the open ones
MAX_EXPIRES = 1.0
#: how long past its ``expires`` a request is taken for lost (its 408 never came)
_GRACE = 0.2
#: status codes that end a pull request (no messages, expired, conflicts, refused)
_ENDS = {"400", "404", "408", "409"}
#: a pull request JetStream refuses at once (``batch`` is not a number): a barrier
_BARRIER = b'{"batch": "barrier"}'
#: what a barrier "asks": more than any request could still bring
_UNCOUNTED = 1 << 30
#: the server's clock may run ahead of ours by this much over one request (s)
_SKEW = 0.01


class Pull:
    """One durable consumer's pull requests and the messages they brought."""

    __slots__ = (
        "asked",
        "durable",
        "error",
        "expires",
        "inbox",
        "keyed",
        "sub",
        "token",
        "unsure",
        "until",
    )

    def __init__(self, durable: str, inbox: str, keyed: bool) -> None:
        self.durable = durable
        self.inbox = inbox
        self.keyed = keyed
        #: messages the open request may still bring (0: none open)
        self.asked = 0
        #: the open request's token and when it is taken for lost (monotonic)
        self.token = ""
        self.until = 0.0
        #: the open request's ``expires`` (s)
        self.expires = 0.0
        #: a request taken for lost was replaced: it may still deliver, late
        self.unsure = False
        #: why the consumer refused a request (it was deleted...), once
        self.error: str | None = None
        self.sub: Subscription | None = None

    def open(self) -> bool:
        """Whether a request may still deliver (not ended, not taken for lost)."""
        return self.asked > 0 and time.monotonic() <= self.until

    def reserved(self) -> int:
        """Places of the room the open request may still fill here."""
        if not self.open():
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
            await self._retire(pulls)
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
        expires = min(self.settings.fetch_wait, MAX_EXPIRES)
        for i in range(count):
            if budget <= 0:
                return
            pull = pulls.pulls[(pulls.next + i) % count]
            if pull.reserved():
                continue
            if pull.asked > 0:  # its end never came: a busy server may still send
                pull.unsure = True
            batch = (
                MAX_BATCH if pull.keyed else min(budget, MAX_BATCH, self.settings.max_ack_pending)
            )
            pull.token = str(next(self._tokens))
            pull.asked = batch
            pull.until = time.monotonic() + expires + _GRACE
            pull.expires = expires
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
        else:
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
        """Stop asking: give back what is buffered and what still arrives, wait until
        the open requests ended, then drain every pull's subscription (see the
        module doc)."""
        for pulls in self._types.values():
            pulls.give_back()
        for pulls in self._types.values():
            await self._retire(pulls)
        self._types.clear()

    async def _retire(self, pulls: Pulls) -> None:
        """Nobody fetches *pulls* any more: give back what they hold and what their
        requests still bring, then unsubscribe once nothing of theirs can be on its
        way (an unsubscribe before loses what is: see the module doc)."""
        pulls.give_back()
        live = [p for p in pulls.pulls if p.sub is not None and (p.asked > 0 or p.unsure)]
        if live:
            try:  # every request sent reached the server: they expire there before...
                await self.nc.flush(self.settings.setup_timeout)  # type: ignore[arg-type]
            except Exception:  # the connection is gone: nothing more comes
                live = []
            now = time.monotonic()
            for pull in live:
                pull.until = now + pull.expires + _SKEW  # ...this, on our clock
            await self._until_ended(pulls, live)
            doubtful = [p for p in live if p.asked > 0 or p.unsure]
            for pull in doubtful:  # its end never came (yet): a barrier
                pull.token = str(next(self._tokens))
                # only its refusal ends it (late messages of the old request count down)
                pull.asked, pull.unsure = _UNCOUNTED, False
                pull.until = time.monotonic() + self.settings.setup_timeout
                try:
                    await self.nc.publish(
                        f"$JS.API.CONSUMER.MSG.NEXT.{pulls.route.stream(self.settings.group)}"
                        f".{pull.durable}",
                        _BARRIER,
                        reply=f"{pull.inbox}.{pull.token}",
                    )
                except Exception:  # the connection is gone: nothing more comes
                    pull.asked = 0
            await self._until_ended(pulls, doubtful)
        # no request of this process is open: a nak from now on needs no delay
        pulls.route.requests_until = min(pulls.route.requests_until, time.monotonic())
        await self._unsubscribe(pulls)

    @staticmethod
    async def _until_ended(pulls: Pulls, which: list[Pull]) -> None:
        """Wait until the requests of *which* ended, or their ``until`` passed."""
        while True:
            ends = [p.until for p in which if p.open()]
            if not ends:
                return
            pulls.arrived.clear()
            try:
                await asyncio.wait_for(
                    pulls.arrived.wait(), max(min(ends) - time.monotonic(), 0.001)
                )
            except asyncio.TimeoutError:
                pass

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
