"""The publishing side of the NATS transport: JetStream writes with a reply subject,
pipelined (many publishes share one reply subscription, as nats-py's
``publish_async``), each bounded by ``publish_timeout`` and by the publish's own
deadline; the answer read without JSON parsing in the common case (a PubAck).

A write that certainly did not store the event (stream full, JetStream not
answering, not connected) raises :class:`~eventcore.QueueFull`, so the type's
overflow policy decides; one whose acknowledgement did not come in time raises
:class:`~eventcore.PublishUnconfirmed` (the same event object published again is
sent under the same id, which JetStream deduplicates).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING, Any

from ..._errors import TransportError
from ..._wire.codec import Codec
from .._kit import RetryIds, answer_wait, partition_of, refused_send, remaining, unconfirmed
from .._kit.retries import Attempt
from .._kit.tracecontext import current_traceparent
from .layout import Route
from .settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

#: JetStream's error codes for a stream that is at its limits (discard new)
_STREAM_FULL = {10077, 10047, 10078}
#: the status of a request nobody answered (JetStream not ready, no stream leader)
NO_RESPONDERS = 503
#: replies after which a stream is checked (and created) again before the next write
_GONE = {NO_RESPONDERS, 10059}
#: what a positive publish acknowledgement is read as
_STORED: dict[str, Any] = {}


class Publisher:
    """Writes routed events to JetStream (see the module doc)."""

    def __init__(self, settings: Settings, nc: Client, codec: Codec) -> None:
        self.settings = settings
        self.nc = nc
        self.codec = codec
        self.retries = RetryIds(settings.duplicate_window)
        self._tokens = itertools.count()
        self._acks: dict[str, tuple[asyncio.Future[dict[str, Any]], type, str]] = {}
        self._reply_prefix = ""

    async def start(self) -> None:
        """Subscribe to the replies of this process's writes."""
        self._reply_prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._reply_prefix + "*", cb=self._on_ack)

    async def stop(self) -> None:
        """Let the writes on their way get their answer (at most ``publish_timeout``);
        those still unanswered then raise :class:`~eventcore.PublishUnconfirmed`."""
        waiting = [future for future, _, _ in self._acks.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=self.settings.publish_timeout)
        for future, event_type, event_id in self._acks.values():
            if not future.done():
                future.set_exception(unconfirmed(event_type, event_id, "JetStream"))
        self._acks.clear()

    async def send(
        self, route: Route, event: Any, *, deadline: float | None, principal: Any
    ) -> None:
        """Write *event* to the stream of every fed group; return once all stored it."""
        attempt = self.retries.attempt(event)
        try:
            await self._send_once(route, attempt, deadline, principal)
        except BaseException:
            # refused, unconfirmed or cancelled: publishing this event object again
            # re-sends it under its id, and only to the groups that did not store it
            self.retries.failed(attempt)
            raise

    async def _send_once(
        self, route: Route, attempt: Attempt, deadline: float | None, principal: Any
    ) -> None:
        event, event_type = attempt.event, route.event_type
        key = None if route.key is None else route.key(event)
        data = self.codec.encode(  # raises EncodeError for a key that is not a JSON value
            event,
            event_type=event_type,
            key=key,
            id=attempt.id,
            principal=principal,
            traceparent=current_traceparent(),
        )
        partition = 0 if route.partitions == 1 else partition_of(key, route.partitions)
        for group in self.settings.groups:  # usually one: the service's own group
            if group in attempt.stored:
                continue
            reply = await self.request(
                f"{route.subject(group)}.{partition}",
                data,
                {"Nats-Msg-Id": attempt.id},
                event_type,
                deadline,
            )
            error = reply.get("error")
            if error is not None:
                if error.get("err_code") in _GONE:  # the stream vanished or is restarting
                    route.stream_ready = False
                raise self._refused(route, group, error)
            attempt.stored.add(group)

    def _refused(self, route: Route, group: str, error: dict[str, Any]) -> Exception:
        """The error for a write JetStream refused."""
        code = error.get("err_code")
        description = error.get("description")
        if code in _STREAM_FULL:
            return refused_send(
                route.event_type, f"the NATS stream {route.stream(group)} is full ({description})"
            )
        if code == NO_RESPONDERS:  # JetStream is (re)starting or electing a leader
            return refused_send(
                route.event_type,
                f"JetStream does not answer for {route.stream(group)} (restarting, or "
                "electing a leader)",
            )
        return TransportError(
            f"JetStream refused a {route.name} message: {description} (err_code {code})"
        )

    async def request(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        event_type: type,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Publish with a reply subject; wait for JetStream's answer, at most
        ``publish_timeout`` and not past *deadline*.

        :raises QueueFull: not connected, or the deadline passed before the write left
        :raises PublishUnconfirmed: no answer in time (the write may be stored)
        """
        if not self.nc.is_connected:
            raise refused_send(event_type, "NATS is unreachable (reconnecting)")
        left = remaining(deadline)
        if left is not None and left <= 0:
            raise refused_send(event_type, "its publish deadline passed before the write")
        wait = answer_wait(self.settings.publish_timeout, deadline)
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[token] = (future, event_type, headers["Nats-Msg-Id"])
        try:
            await self.nc.publish(subject, data, reply=self._reply_prefix + token, headers=headers)
            return await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            raise unconfirmed(event_type, headers["Nats-Msg-Id"], "JetStream", wait) from None
        finally:
            self._acks.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._acks.get(msg.subject[len(self._reply_prefix) :])
        if waiting is None or waiting[0].done():
            return
        future = waiting[0]
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_result(
                {"error": {"err_code": NO_RESPONDERS, "description": "no stream responded"}}
            )
            return
        data = msg.data
        if b'"error"' not in data:  # the common case: a PubAck, which needs no parsing
            future.set_result(_STORED)
            return
        try:
            future.set_result(json.loads(data))
        except ValueError:
            future.set_result({"error": {"description": "an unreadable acknowledgement"}})
