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

import time
from typing import TYPE_CHECKING, Any

from ..._errors import TransportError
from ..._wire.ids import new_event_id
from .._kit import bounded, partition_of, refused_send, unconfirmed
from .._kit.tracecontext import current_traceparent
from ._amqp import CONNECTION_ERRORS, aiormq, spec
from ._layout import Route

if TYPE_CHECKING:
    from ..._wire.codec import Codec
    from ._layout import Settings
    from ._link import Link

#: how many unconfirmed events are remembered (for a retry under the same id)
_REMEMBERED = 10_000
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
        #: publishes that did not complete, by the identity of their event
        self._unconfirmed: dict[int, tuple[Any, str, float]] = {}

    def _event_id(self, event: Any) -> str:
        remembered = self._unconfirmed.pop(id(event), None)
        if remembered is not None and remembered[0] is event:
            return remembered[1]
        return new_event_id()

    def _remember(self, event: Any, event_id: str) -> None:
        self._unconfirmed[id(event)] = (event, event_id, time.monotonic())
        while len(self._unconfirmed) > _REMEMBERED:
            del self._unconfirmed[next(iter(self._unconfirmed))]

    async def send(
        self, route: Route, event: Any, *, deadline: float | None, principal: Any, again: Any
    ) -> None:
        """Publish *event* on *route*; *again* re-declares the route after a return."""
        event_type = route.event_type
        if not self._link.up.is_set():
            raise refused_send(event_type, f"RabbitMQ at {self._link.where} is unreachable")
        key = None if route.key is None else route.key(event)
        event_id = self._event_id(event)
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
            try:
                await self._publish(route, partition, body, properties, deadline)
            except aiormq.exceptions.PublishError:  # returned: no queue bound
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
                event_type,
                f"a queue of {route.name} is full (x-max-length / x-max-length-bytes "
                "with reject-publish)",
            ) from None
        except BaseException:
            self._remember(event, event_id)
            raise

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
        wait, _ = bounded(self.publish_timeout, deadline)
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
        except CONNECTION_ERRORS:  # TimeoutError included (an OSError): no confirmation
            # sent, perhaps stored: a retry of the same event object keeps its id
            raise unconfirmed(event_type, str(properties.message_id), "RabbitMQ", wait) from None
