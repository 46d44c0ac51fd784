"""OpenTelemetry spans for handler calls and publishes (opentelemetry-api).

::

    bus = Dispatcher()
    tracing = instrument(bus)  # or instrument(bus, tracer_provider)
    await bus.publish(OrderPlaced("A1", 10.0))  # a "send OrderPlaced" span, then
    # a "process OrderPlaced" span per handler call

:class:`Tracing` is a handle middleware that wraps every handler call in a
``CONSUMER`` span named ``process <EventType>``, and (:meth:`Tracing.trace_publish`)
a publish middleware that records a short ``PRODUCER`` span named
``send <EventType>`` for every publish. :func:`instrument` installs both and turns
on ``bus.propagate_context``: handlers run in a copy of the publisher's contextvars,
so their spans are children of whatever span was current when the event was
published (the request's span in a web app) and siblings of its ``send`` span.
:meth:`Tracing.publish` instead wraps the whole publish in the ``send`` span, which
becomes the handler spans' parent. Without context propagation handler spans start
new traces. Attributes follow the messaging semantic conventions
(``messaging.system="eventcore"``, ``messaging.destination.name``,
``messaging.message.id``) plus ``eventcore.handler`` and ``eventcore.attempt``. A
handler's exception is recorded on its span, which gets an error status.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from eventcore import CallNext, Dispatcher, HandlerCall, __version__

from .._middleware import in_event_context
from ._context import propagate_context as _propagate_context

__all__ = ["Tracing", "instrument"]


def _type_name(event_type: type) -> str:
    return event_type.__qualname__


#: the send span :meth:`Tracing.publish` holds open while it publishes
_publishing: ContextVar[Span | None] = ContextVar("eventcore_otel_publishing", default=None)


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

    def trace_publish(self, event: Any) -> Any:
        """Publish middleware: record a short ``send <EventType>`` span (PRODUCER) for
        every ``bus.publish`` / ``publish_nowait`` / ``publish_and_wait``.

        It is a child of the publisher's current span and ends at once (a publish
        middleware runs before the event is queued and cannot wrap it). With
        ``propagate_context=True`` it becomes the current span of the context that
        travels with the event, so the handler spans are its children (the publisher's
        own context is not touched). Inside :meth:`publish`, which has its own send
        span, it records nothing. Install it with
        ``bus.use(publish=[tracing.trace_publish])`` (or :func:`instrument`).
        """
        current = trace.get_current_span()
        if current is _publishing.get():  # Tracing.publish's span covers this publish
            return event
        name = self._type_name(type(event))
        span = self.tracer.start_span(
            f"send {name}", kind=SpanKind.PRODUCER, attributes=self._send_attributes(name)
        )
        span.end()
        if in_event_context():  # a copy that only the event's handlers see
            otel_context.attach(trace.set_span_in_context(span))
        return event

    def _send_attributes(self, name: str) -> dict[str, str]:
        return {
            "messaging.system": "eventcore",
            "messaging.operation.type": "send",
            "messaging.destination.name": name,
        }

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
        with self.tracer.start_as_current_span(
            f"send {name}", kind=SpanKind.PRODUCER, attributes=self._send_attributes(name)
        ) as span:
            token = _publishing.set(span)
            try:
                if principal is None:
                    accepted = await bus.publish(event, timeout=timeout)
                else:
                    accepted = await bus.publish(event, timeout=timeout, principal=principal)
            finally:
                _publishing.reset(token)
            span.set_attribute("eventcore.accepted", accepted)
            if not accepted:
                span.set_status(Status(StatusCode.ERROR, "the event was dropped"))
            return accepted


def instrument(
    bus: Dispatcher,
    tracer_provider: TracerProvider | None = None,
    *,
    publish_spans: bool = True,
    propagate_context: bool = True,
) -> Tracing:
    """Install :class:`Tracing` on *bus* and return it.

    :param tracer_provider: where spans go (default: the global provider)
    :param publish_spans: also record a ``send <EventType>`` span for every publish
        (:meth:`Tracing.trace_publish` as publish middleware)
    :param propagate_context: turn on ``bus.propagate_context``, so that handler spans
        are children of the publisher's span; False leaves the setting as it is
    """
    tracing = Tracing(tracer_provider)
    if propagate_context:
        _propagate_context(bus, "eventcore.integrations.opentelemetry.instrument")
    bus.use(publish=[tracing.trace_publish] if publish_spans else [], handle=[tracing])
    return tracing
