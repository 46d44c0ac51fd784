"""Stdlib logging with the event type and id on every record written by a handler.

::

    import logging
    from eventcore.integrations.logging import EventContextFilter, instrument

    instrument(bus)  # handle middleware: marks which event each handler call works on
    handler = logging.StreamHandler()
    handler.addFilter(EventContextFilter())
    fmt = "%(levelname)s [%(event_type)s #%(event_id)s] %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger().addHandler(handler)

:class:`EventContext` is a handle middleware that sets a context variable for
the duration of each handler call; :class:`EventContextFilter` copies it onto
every record as ``event_type``, ``event_id``, ``event_handler`` and
``event_attempt`` (``"-"`` outside handlers), whichever logger wrote it -
yours, a library's or eventcore's. :func:`event_logger` gives a
``LoggerAdapter`` that adds them without a filter. Payloads are never logged:
only the type name, the id eventcore gave the event, and the handler's name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from eventcore import CallNext, Dispatcher, HandlerCall

__all__ = [
    "EventContext",
    "EventContextFilter",
    "EventInfo",
    "current_event",
    "event_logger",
    "instrument",
]


@dataclass(frozen=True)
class EventInfo:
    """Which event a handler call works on (no payload).

    :ivar event_type: the event class's qualified name
    :ivar event_id: the id eventcore gave the event (unique within the process)
    :ivar handler: the handler's qualified name
    :ivar attempt: 1, or more for retries
    """

    event_type: str
    event_id: int
    handler: str
    attempt: int

    def as_extra(self) -> dict[str, Any]:
        """The record attributes: ``event_type``, ``event_id``, ``event_handler``,
        ``event_attempt``."""
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "event_handler": self.handler,
            "event_attempt": self.attempt,
        }


_current: ContextVar[EventInfo | None] = ContextVar("eventcore_current_event", default=None)

_OUTSIDE: Mapping[str, Any] = {
    "event_type": "-",
    "event_id": "-",
    "event_handler": "-",
    "event_attempt": "-",
}


def current_event() -> EventInfo | None:
    """The event the current handler call works on, or None outside handlers."""
    return _current.get()


class EventContext:
    """Handle middleware that makes :func:`current_event` work inside handlers.

    :param logger: where to write a DEBUG record when a call starts, ends and
        raises (None: write nothing; the filter still works)
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger

    async def __call__(self, event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        """Run the handler with :func:`current_event` set."""
        handler = call.subscription.handler
        info = EventInfo(
            type(event).__qualname__,
            call.event_id,
            getattr(handler, "__qualname__", None) or type(handler).__qualname__,
            call.attempt,
        )
        token = _current.set(info)
        log = self.logger
        try:
            if log is None or not log.isEnabledFor(logging.DEBUG):
                return await call_next(event)
            start = anyio.current_time()
            log.debug("handler %s started", info.handler)
            try:
                result = await call_next(event)
            except Exception as exc:
                log.debug(
                    "handler %s raised %s after %.1f ms",
                    info.handler,
                    type(exc).__qualname__,
                    (anyio.current_time() - start) * 1000,
                )
                raise
            log.debug(
                "handler %s done in %.1f ms", info.handler, (anyio.current_time() - start) * 1000
            )
            return result
        finally:
            _current.reset(token)


class EventContextFilter(logging.Filter):
    """Adds ``event_type``, ``event_id``, ``event_handler`` and ``event_attempt`` to every
    record (``"-"`` outside handler calls). Attach it to a handler; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the attributes the record does not have yet; always keep the record."""
        info = _current.get()
        values = _OUTSIDE if info is None else info.as_extra()
        for name, value in values.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:  # subscriptable at runtime only from Python 3.11
    _Adapter = logging.LoggerAdapter


class _EventAdapter(_Adapter):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        info = _current.get()
        extra = dict(_OUTSIDE if info is None else info.as_extra())
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def event_logger(logger: logging.Logger | str) -> logging.LoggerAdapter[logging.Logger]:
    """A ``LoggerAdapter`` whose records carry the current event's type and id.

    Needs :class:`EventContext` installed on the dispatcher.
    """
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    return _EventAdapter(logger, {})


def instrument(bus: Dispatcher, logger: logging.Logger | None = None) -> EventContext:
    """Install :class:`EventContext` as handle middleware on *bus* and return it.

    :param logger: also write DEBUG records around each handler call there
    """
    middleware = EventContext(logger)
    bus.use(handle=[middleware])
    return middleware
