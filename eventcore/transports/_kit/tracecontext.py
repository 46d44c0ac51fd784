"""The publisher's W3C trace context across a broker, when OpenTelemetry is installed:
the publisher writes its current span into the envelope (``traceparent``), and the
consumer runs the event's handlers in a context where that span is the parent."""

from __future__ import annotations

import contextvars
from typing import Any

from ..._wire.ids import handling_context, tracked_id

_propagator: Any = None
_context_api: Any = None
_current_span: Any = None
try:
    from opentelemetry import context as _context_api
    from opentelemetry.trace import get_current_span as _current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _propagator = TraceContextTextMapPropagator()
except ImportError:  # pragma: no cover - depends on the environment
    pass


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, or None (no OpenTelemetry, no span)."""
    if _current_span is None:
        return None
    span = _current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def handler_context(
    traceparent: str | None, event_id: str | None = None
) -> contextvars.Context | None:
    """A copy of the current context for the event's handlers, where the current span
    is the publisher's and, once an idempotent inbox needs it, the event's id is
    known (``current_event_id``); None when there is neither."""
    event_id = tracked_id(event_id)
    traced = traceparent is not None and _propagator is not None
    if not traced and event_id is None:
        return None
    context = contextvars.copy_context()
    if traced:
        context.run(_context_api.attach, _propagator.extract({"traceparent": traceparent}))
    if event_id is not None:
        handling_context(context, event_id)
    return context
