"""Errors of the wire, each with a :class:`WireReason` a consumer can record in a dead letter.

::

    EventcoreError
    └── WireError                          .reason, .name, .event_id
        ├── InvalidEventName (ValueError)  a name NATS subjects / Redis keys cannot carry
        ├── DuplicateEventName (ValueError)  two types under one name, or one type under two
        ├── EncodeError (TypeError)        an event, key or principal that cannot be encoded
        ├── MessageTooLarge                an encoded message above the size limit
        └── DecodeError (ValueError)       bytes that are not a valid message of a known type
            ├── UnknownEventType           a type name this process has not registered
            └── UnsupportedVersion         a version outside what the type accepts
"""

from __future__ import annotations

import enum

from .._errors import EventcoreError


class WireReason(str, enum.Enum):
    """Why a message could not be sent or received; stable strings for dead letters."""

    INVALID_NAME = "invalid_name"
    DUPLICATE_NAME = "duplicate_name"
    UNENCODABLE = "unencodable"
    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"


class WireError(EventcoreError):
    """Base class of the errors of names, envelopes and codecs.

    :ivar reason: a :class:`WireReason`, for a dead letter or a metric label
    :ivar name: the event type name, when known
    :ivar event_id: the event id, when the envelope was read that far
    """

    reason: WireReason = WireReason.UNDECODABLE

    def __init__(
        self, message: str, *, name: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.event_id = event_id


class InvalidEventName(WireError, ValueError):
    """An event name that NATS subjects or Redis keys cannot carry."""

    reason = WireReason.INVALID_NAME


class DuplicateEventName(WireError, ValueError):
    """A name already taken by another type, or a type already registered under another name."""

    reason = WireReason.DUPLICATE_NAME


class EncodeError(WireError, TypeError):
    """An event, key or principal that the codec cannot encode."""

    reason = WireReason.UNENCODABLE


class MessageTooLarge(WireError):
    """An encoded message larger than the codec's ``max_size``; checked on both sides.

    :ivar size: the message's size in bytes
    :ivar limit: the limit in bytes
    """

    reason = WireReason.TOO_LARGE

    def __init__(
        self,
        message: str,
        *,
        size: int,
        limit: int,
        name: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message, name=name, event_id=event_id)
        self.size = size
        self.limit = limit


class DecodeError(WireError, ValueError):
    """Bytes that are not a valid message: malformed, or a payload its type refuses."""

    reason = WireReason.UNDECODABLE


class UnknownEventType(DecodeError):
    """A message whose type name this process has not registered."""

    reason = WireReason.UNKNOWN_TYPE


class UnsupportedVersion(DecodeError):
    """A message whose version is outside what its registered type accepts.

    :ivar version: the message's version
    :ivar supported: the versions accepted, lowest and highest
    """

    reason = WireReason.UNSUPPORTED_VERSION

    def __init__(
        self,
        message: str,
        *,
        version: int,
        supported: tuple[int, int],
        name: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message, name=name, event_id=event_id)
        self.version = version
        self.supported = supported
