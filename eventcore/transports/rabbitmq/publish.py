"""Publishing to RabbitMQ: one confirmed, mandatory publish per event, many in flight
on one channel.

The event goes to the type exchange with its name (and partition) as routing key,
``message_id`` = the event id, persistent. ``send`` returns once RabbitMQ
confirmed it (publisher confirms: every queue it was routed to has it). The
outcomes that are not a confirmation:

* returned (no queue bound for it): the route is declared again and the event
  published once more; returned again, :class:`~eventcore.TransportError`;
* nacked (a queue at ``x-max-length`` with ``reject-publish``), or RabbitMQ
  unreachable before the write: :class:`~eventcore.QueueFull`, so the type's
  overflow policy and ``timeout=`` apply;
* no confirmation within ``publish_timeout`` (or the publish's deadline), or the
  connection lost after the write: :class:`~eventcore.PublishUnconfirmed`; a
  retry of the same event object is re-sent under the same id (RabbitMQ does not
  deduplicate: a consumer may then see the event twice, with one id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._errors import TransportError
from .._kit import RetryIds, answer_wait, partition_of, refused_send, remaining, unconfirmed
from .._kit.tracecontext import current_traceparent
from .amqp import CONNECTION_ERRORS, aiormq, spec
from .layout import Route

if TYPE_CHECKING:
    from ..._wire.codec import Codec
    from .layout import Settings
    from .link import Link

#: how long a failed publish's event id is kept for a retry of the same object (s)
_RETRY_WINDOW = 600.0
#: what makes a publish declare its route again and try once more: returned as
#: unroutable (a queue or binding vanished), or refused for a missing exchange
_GONE = (aiormq.exceptions.PublishError, aiormq.exceptions.ChannelNotFoundEntity)
#: persistent messages (delivery mode 2)
_PERSISTENT = 2


class Publisher:
    """Sends events of routed types (see the module doc)."""

    def __init__(
        self, link: Link, settings: Settings, codec: Codec, *, publish_timeout: float
    ) -> None:
        self._link = link
        self._settings = settings
        self._codec = codec
        self._content_type = codec.content_type
        self.publish_timeout = publish_timeout
        #: failed publishes: a retry of the same event object keeps its id
        self._retries = RetryIds(window=_RETRY_WINDOW)

    async def send(
        self, route: Route, event: Any, *, deadline: float | None, principal: Any, again: Any
    ) -> None:
        """Publish *event* on *route*; *again* re-declares the route after a return."""
        event_type = route.event_type
        if not self._link.up.is_set():
            raise refused_send(event_type, f"RabbitMQ at {self._link.where} is unreachable")
        key = None if route.key is None else route.key(event)
        attempt = self._retries.attempt(event)
        event_id = attempt.id
        body = self._codec.encode(  # raises EncodeError for a key that is not a JSON value
            event,
            event_type=event_type,
            key=key,
            id=event_id,
            principal=principal,
            traceparent=current_traceparent(),
        )
        partition = 0 if route.key is None else partition_of(key, route.partitions)
        properties = spec.Basic.Properties(
            message_id=event_id,
            delivery_mode=_PERSISTENT,
            content_type=self._content_type,
            message_type=route.name,
        )
        try:
            await self._confirmed(route, partition, body, properties, deadline, again)
        except BaseException:
            self._retries.failed(attempt)  # a retry of this event object keeps its id
            raise

    async def _confirmed(
        self,
        route: Route,
        partition: int,
        body: bytes,
        properties: spec.Basic.Properties,
        deadline: float | None,
        again: Any,
    ) -> None:
        """Publish once (twice after a return); RabbitMQ's refusals as eventcore errors."""
        try:
            try:
                await self._publish(route, partition, body, properties, deadline)
            except _GONE:  # returned (no queue bound), or the exchange is gone
                await again(route)
                await self._publish(route, partition, body, properties, deadline)
        except aiormq.exceptions.PublishError:
            raise TransportError(
                f"RabbitMQ returned a {route.name} message as unroutable: no queue is bound "
                f"to the exchange {self._settings.exchange!r} with the key "
                f"{route.routing_key(partition)!r}. Declare the consuming groups (groups=) "
                "or check that nothing unbinds eventcore's queues"
            ) from None
        except aiormq.exceptions.DeliveryError:  # nacked: a queue at its length limit
            raise refused_send(
                route.event_type,
                f"a queue of {route.name} is full (x-max-length / x-max-length-bytes "
                "with reject-publish)",
            ) from None

    async def _publish(
        self,
        route: Route,
        partition: int,
        body: bytes,
        properties: spec.Basic.Properties,
        deadline: float | None,
    ) -> None:
        event_type = route.event_type
        try:
            channel = await self._link.publisher()
        except CONNECTION_ERRORS as exc:
            raise refused_send(
                event_type, f"RabbitMQ at {self._link.where} is unreachable ({exc})"
            ) from None
        if deadline is not None and not remaining(deadline):  # nothing written: not stored
            raise refused_send(event_type, "its publish deadline passed before the write")
        wait = answer_wait(self.publish_timeout, deadline)
        try:
            await channel.basic_publish(
                body,
                exchange=self._settings.exchange,
                routing_key=route.routing_key(partition),
                properties=properties,
                mandatory=True,
                timeout=wait,
                wait=False,
            )
        except aiormq.exceptions.ChannelNotFoundEntity:  # the exchange was deleted: not stored
            raise
        except CONNECTION_ERRORS:  # TimeoutError included (an OSError): no confirmation
            # sent, perhaps stored: a retry of the same event object keeps its id
            raise unconfirmed(event_type, str(properties.message_id), "RabbitMQ", wait) from None
