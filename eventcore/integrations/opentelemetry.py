"""OpenTelemetry spans for handler calls and publishes (opentelemetry-api).

::

    bus = Dispatcher(propagate_context=True)  # handlers see the publisher's current span
    tracing = Tracing()  # or Tracing(tracer_provider=provider)
    bus.use(handle=[tracing])

    await tracing.publish(bus, OrderPlaced("A1", 10.0))  # a "send" span around the publish

:class:`Tracing` is a handle middleware that wraps every handler call in a
``CONSUMER`` span named ``process <EventType>``. With ``propagate_context=True``
the handler runs in a copy of the publisher's contextvars, so that span is a
child of whatever span was current when the event was published - the request's
span in a web app, or the ``send`` span of :meth:`Tracing.publish`. Without it,
handler spans start new traces. Attributes follow the messaging semantic
conventions (``messaging.system="eventcore"``, ``messaging.destination.name``,
``messaging.message.id``) plus ``eventcore.handler`` and ``eventcore.attempt``.
A handler's exception is recorded on its span, which gets an error status.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider

from eventcore import CallNext, Dispatcher, HandlerCall, __version__

__all__ = ["Tracing", "instrument"]


def _type_name(event_type: type) -> str:
    return event_type.__qualname__


class Tracing:
    """Handle middleware creating one span per handler call; also traces publishes.

    :param tracer_provider: where spans go (default: the global provider)
    :param type_name: how an event class is named in span names and attributes
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        type_name: Callable[[type], str] = _type_name,
    ) -> None:
        self.tracer: Tracer = trace.get_tracer("eventcore", __version__, tracer_provider)
        self._type_name = type_name

    async def __call__(self, event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        """Run the handler inside a ``process <EventType>`` span."""
        name = self._type_name(type(event))
        handler = call.subscription.handler
        attributes: dict[str, str | int] = {
            "messaging.system": "eventcore",
            "messaging.operation.type": "process",
            "messaging.destination.name": name,
            "messaging.message.id": str(call.event_id),
            "eventcore.handler": getattr(handler, "__qualname__", None)
            or type(handler).__qualname__,
            "eventcore.attempt": call.attempt,
        }
        with self.tracer.start_as_current_span(
            f"process {name}", kind=SpanKind.CONSUMER, attributes=attributes
        ):
            return await call_next(event)

    async def publish(
        self,
        bus: Dispatcher,
        event: object,
        *,
        timeout: float | None = None,
        principal: Hashable | None = None,
    ) -> bool:
        """``bus.publish(event)`` inside a ``PRODUCER`` span named ``send <EventType>``.

        With ``propagate_context=True`` the handler spans become its children. A
        refusal (``publish`` returned False) sets ``eventcore.accepted`` to false; an
        exception (``QueueFull``, ``PublishTimeout``...) is recorded and re-raised.
        """
        name = self._type_name(type(event))
        attributes = {
            "messaging.system": "eventcore",
            "messaging.operation.type": "send",
            "messaging.destination.name": name,
        }
        with self.tracer.start_as_current_span(
            f"send {name}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            if principal is None:
                accepted = await bus.publish(event, timeout=timeout)
            else:
                accepted = await bus.publish(event, timeout=timeout, principal=principal)
            span.set_attribute("eventcore.accepted", accepted)
            if not accepted:
                span.set_status(Status(StatusCode.ERROR, "the event was dropped"))
            return accepted


def instrument(bus: Dispatcher, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Install :class:`Tracing` as handle middleware on *bus* and return it.

    Create the dispatcher with ``propagate_context=True`` to parent handler spans
    to the publisher's span.
    """
    tracing = Tracing(tracer_provider)
    bus.use(handle=[tracing])
    return tracing
