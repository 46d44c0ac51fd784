"""The exception hierarchy. Every error eventcore raises derives from :class:`EventcoreError`.

::

    EventcoreError
    ├── InvalidEvent (TypeError)        publish() got None, a class, or a builtin value
    ├── InvalidHandler (TypeError)      subscribe() got something that is not an async callable
    ├── InvalidConfiguration (ValueError)  a bad queue_size, concurrency, timeout, ...
    ├── DispatcherClosed (RuntimeError) publish before ``async with`` or after it ended
    ├── LifecycleMisuse (RuntimeError)  entering a running dispatcher, or leaving/draining
    │                                   it from one of its own handlers
    ├── QueueFull                       the queue is full under Overflow.RAISE or publish_nowait
    ├── PublishTimeout (TimeoutError)   no room appeared within ``timeout=`` under Overflow.BLOCK
    ├── Unauthorized (PermissionError)  the policy does not let this principal publish this type
    ├── HandlerTimeout (TimeoutError)   a handler ran past its timeout and was cancelled
    │                                   (goes to on_error and dead letters, not to publishers)
    └── TransportError                  a broker refused or failed a request
        └── PublishUnconfirmed (TimeoutError)  the broker's acknowledgement did not come in
                                        time: the outcome is unknown, a retry is safe
"""

from __future__ import annotations


class EventcoreError(Exception):
    """Base class of every error raised by eventcore."""


class InvalidEvent(EventcoreError, TypeError):
    """:meth:`~eventcore.Dispatcher.publish` was given something that is not an event."""


class InvalidHandler(EventcoreError, TypeError):
    """A handler passed to ``subscribe``/``on`` is not an ``async def`` callable."""


class InvalidConfiguration(EventcoreError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class DispatcherClosed(EventcoreError, RuntimeError):
    """The dispatcher is not running: it was never started, or it is closing or closed."""


class LifecycleMisuse(EventcoreError, RuntimeError):
    """A life method was called where it cannot work: ``async with`` on a dispatcher
    that already runs, or leaving it (``__aexit__``) or ``drain()`` from one of its
    own handlers (they would wait for that very handler)."""


class QueueFull(EventcoreError):
    """The event type's queue is full and the publish was not allowed to wait.

    :ivar event_type: the type whose queue was full
    """

    def __init__(self, message: str, event_type: type) -> None:
        super().__init__(message)
        self.event_type = event_type


class PublishTimeout(EventcoreError, TimeoutError):
    """A blocking publish found no room in the queue within its timeout.

    :ivar event_type: the type whose queue stayed full
    """

    def __init__(self, message: str, event_type: type) -> None:
        super().__init__(message)
        self.event_type = event_type


class Unauthorized(EventcoreError, PermissionError):
    """The authorization policy refused to let a principal publish an event type.

    :ivar principal: who tried to publish (None when anonymous)
    :ivar event_type: what they tried to publish
    """

    def __init__(self, message: str, principal: object, event_type: type) -> None:
        super().__init__(message)
        self.principal = principal
        self.event_type = event_type


class HandlerTimeout(EventcoreError, TimeoutError):
    """A handler ran past its timeout and was cancelled; its worker slot was freed.

    :ivar timeout: the limit, in seconds
    """

    def __init__(self, message: str, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class TransportError(EventcoreError):
    """A broker transport failed: the broker refused a request, or its configuration
    does not match what the transport expects (never carries credentials)."""


class PublishUnconfirmed(TransportError, TimeoutError):
    """The broker did not acknowledge a routed publish in time.

    The outcome is unknown: the event may or may not be stored. Publishing the same
    event object again is safe: it is sent under the same event id, which the
    broker deduplicates (within the stream's duplicate window).

    :ivar event_type: the type of the event
    :ivar event_id: the id it was sent under
    """

    def __init__(self, message: str, event_type: type, event_id: str) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.event_id = event_id
