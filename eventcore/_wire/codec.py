"""Encode events into envelopes and back: msgspec for dataclasses, attrs classes,
Structs and TypedDicts; pydantic's own methods for its models; never pickle.

Every failure is a :class:`~eventcore.wire.WireError` with a reason that a
consumer can turn into a dead letter; no input makes :meth:`Codec.decode`
raise anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, Literal, Protocol, Union

import msgspec

from .envelope import TRACEPARENT, Envelope, Header, envelope_class
from .errors import (
    DecodeError,
    EncodeError,
    MessageTooLarge,
    UnknownEventType,
    UnsupportedVersion,
    WireError,
)
from .ids import new_event_id_and_time
from .kinds import SUPPORTED, Kind, kind_of
from .names import EventName, EventNames


class _KeyedConfig(Protocol):
    @property
    def key(self) -> Callable[[Any], Hashable] | None:
        """The type's key function."""
        ...


class _Names(Protocol):
    """What :meth:`Codec.for_dispatcher` reads of a dispatcher."""

    @property
    def names(self) -> EventNames:
        """The dispatcher's registry of event names."""
        ...

    def config(self, event_type: type) -> _KeyedConfig:
        """The settings in force for *event_type*."""
        ...


DEFAULT_MAX_SIZE = 1024 * 1024
"""1 MiB: NATS's default ``max_payload``."""

Format = Literal["json", "msgpack"]
KeyOf = Callable[[type], "Callable[[Any], Hashable] | None"]


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET


class _Typed:
    """What the codec knows about one registered type."""

    __slots__ = ("entry", "envelope", "kind", "pydantic", "version", "versions")

    def __init__(self, entry: EventName, kind: Kind) -> None:
        self.entry = entry
        self.kind = kind
        #: plain attributes, not enum look-ups: read on every message
        self.pydantic = kind is Kind.PYDANTIC
        self.version = entry.version
        self.versions = range(entry.min_version, entry.version + 1)
        self.envelope = envelope_class(entry, kind)


class Codec:
    """Turns events into bytes and bytes into :class:`Envelope` s, by registered name.

    :param names: the registry of names (``bus.names``); a type not registered
        yet is registered on first encode with its ``@event`` or default name
    :param format: ``"json"`` (the default) or ``"msgpack"``
    :param max_size: the largest message, in bytes, that is sent or decoded
    :param keys: ``keys(event_type)`` -> the type's key function or None; used when
        ``encode`` is not given ``key=`` (:meth:`for_dispatcher` passes the
        dispatcher's per-type ``key``)
    """

    def __init__(
        self,
        names: EventNames | None = None,
        *,
        format: Format = "json",
        max_size: int = DEFAULT_MAX_SIZE,
        keys: KeyOf | None = None,
    ) -> None:
        if format == "json":
            self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder = msgspec.json.Encoder()
        elif format == "msgpack":
            self._encoder = msgspec.msgpack.Encoder()
        else:
            raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        self.format: Format = format
        self.max_size = max_size
        self.names = names if names is not None else EventNames()
        self._keys = keys
        self._json = format == "json"
        self._by_type: dict[type, _Typed] = {}
        self._by_envelope: dict[type, _Typed] = {}
        self._revision = -1
        self._decoder: Any = None
        #: registered types whose messages cannot be decoded, and why
        self._undecodable: dict[str, str] = {}
        self._header = self._decoder_for(Header)

    @classmethod
    def for_dispatcher(
        cls, bus: _Names, *, format: Format = "json", max_size: int = DEFAULT_MAX_SIZE
    ) -> Codec:
        """A codec over *bus*'s names that writes each type's ``key`` as configured."""
        return cls(bus.names, format=format, max_size=max_size, keys=lambda t: bus.config(t).key)

    @property
    def content_type(self) -> str:
        """``application/json`` or ``application/msgpack``."""
        return "application/json" if self._json else "application/msgpack"

    # -- encoding --------------------------------------------------------------------

    def encode(
        self,
        event: Any,
        *,
        event_type: type | None = None,
        key: Any = _UNSET,
        traceparent: str | None = None,
        principal: Any = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> bytes:
        """Encode *event* in its envelope.

        :param event_type: the registered type, when it is not ``type(event)``
            (a TypedDict's instances are plain dicts)
        :param key: the key header; default: the type's key function, if any
        :param traceparent: the publisher's W3C ``traceparent``
        :param principal: who published; must be a JSON value (str, int, list, ...)
        :param id: the event id, to re-send an event under its own id; default: new
        :param time: the acceptance time; default: now
        :raises EncodeError: the event's class is not supported, or the event,
            key, principal or traceparent cannot be encoded
        :raises MessageTooLarge: the message is larger than ``max_size``
        :return: the message
        """
        if event_type is None:
            event_type = type(event)
        elif not _is_instance(event, event_type):
            label = getattr(event_type, "__qualname__", event_type)
            raise EncodeError(f"{event!r} is not a {label}")
        typed = self._by_type.get(event_type)
        if typed is None:
            typed = self._prepare(event_type)
        if key is _UNSET:
            key = None
            if self._keys is not None:
                key_of = self._keys(event_type)
                if key_of is not None:
                    key = key_of(event)
        if traceparent is not None:
            _check_traceparent(traceparent, typed.entry.name)
        if id is None or time is None:
            new_id, now = new_event_id_and_time()
            id = new_id if id is None else id
            time = now if time is None else time
        envelope = typed.envelope(
            id=id,
            version=typed.version,
            time=time,
            key=key,
            traceparent=traceparent,
            principal=principal,
            event=self._pydantic_payload(event, typed) if typed.pydantic else event,
        )
        try:
            data = self._encoder.encode(envelope)
        except Exception as exc:
            raise self._why_unencodable(exc, typed, event, key, principal) from exc
        if len(data) > self.max_size:
            raise MessageTooLarge(
                f"a {typed.entry.name} message is {len(data)} bytes, above the limit of "
                f"{self.max_size}: send a reference to the data instead, or raise max_size "
                "(and the broker's limit)",
                size=len(data),
                limit=self.max_size,
                name=typed.entry.name,
                event_id=envelope.id,
            )
        return data

    def _prepare(self, event_type: type) -> _Typed:
        if not isinstance(event_type, type):
            raise EncodeError(f"event_type must be a class, got {event_type!r}")
        kind = kind_of(event_type)
        if kind is Kind.UNSUPPORTED:
            raise EncodeError(
                f"cannot encode {event_type.__qualname__}: an event on the wire must be "
                f"{SUPPORTED} (eventcore never pickles)"
            )
        return self._typed(self.names.resolve(event_type))

    def _typed(self, entry: EventName) -> _Typed:
        typed = self._by_type.get(entry.event_type)
        if typed is None or typed.entry != entry:
            typed = _Typed(entry, kind_of(entry.event_type))
            self._by_type[entry.event_type] = typed
            self._by_envelope[typed.envelope] = typed
        return typed

    def _pydantic_payload(self, event: Any, typed: _Typed) -> msgspec.Raw:
        try:
            if self._json:
                return msgspec.Raw(event.model_dump_json())
            return msgspec.Raw(msgspec.msgpack.encode(event.model_dump(mode="json")))
        except Exception as exc:
            raise EncodeError(
                f"the pydantic model {typed.entry.name} could not be serialized: {exc}",
                name=typed.entry.name,
            ) from exc

    def _why_unencodable(
        self, exc: Exception, typed: _Typed, event: Any, key: Any, principal: Any
    ) -> EncodeError:
        name = typed.entry.name
        for label, value, hint in (
            ("principal", principal, "publish with a str, int or other JSON value"),
            ("key", key, "make the type's key function return a str or an int"),
        ):
            try:
                self._encoder.encode(value)
            except Exception:
                return EncodeError(
                    f"the {label} {value!r} of a {name} event cannot be encoded ({exc}): {hint}",
                    name=name,
                )
        shown = repr(event)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        return EncodeError(f"a {name} event cannot be encoded: {exc} ({shown})", name=name)

    # -- decoding --------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> Envelope:
        """Decode one message into its :class:`Envelope`.

        Unknown fields are ignored; missing fields with defaults take them.

        :raises MessageTooLarge: the message is larger than ``max_size`` (not read)
        :raises UnknownEventType: its type name is not registered here
        :raises UnsupportedVersion: its version is outside what the type accepts
        :raises DecodeError: anything else that makes it unreadable
        """
        size = len(data)
        if size > self.max_size:
            raise MessageTooLarge(
                f"a message of {size} bytes is above the limit of {self.max_size}; not read",
                size=size,
                limit=self.max_size,
            )
        decoder = self._decoder
        if self._revision != self.names.revision or decoder is None:
            decoder = self._rebuild()
        try:
            envelope: Envelope = decoder.decode(data)
        except Exception:
            raise self._why_undecodable(data) from None
        typed = self._by_envelope.get(type(envelope))
        if typed is None:  # nothing registered: the headers were all it read
            raise self._why_undecodable(data)
        if envelope.version not in typed.versions:
            raise self._unsupported(typed.entry, envelope.version, envelope.id)
        if typed.pydantic:
            return self._pydantic_event(envelope, typed)
        return envelope

    def _rebuild(self) -> Any:
        self._revision = self.names.revision
        classes = []
        self._undecodable.clear()
        for entry in self.names:
            kind = kind_of(entry.event_type)
            try:
                if kind is Kind.UNSUPPORTED:
                    raise TypeError(f"it is not {SUPPORTED}")
                envelope = self._typed(entry).envelope
                self._decoder_for(envelope)  # msgspec checks every field's type here
            except TypeError as exc:
                self._undecodable[entry.name] = str(exc)
            else:
                classes.append(envelope)
        self._decoder = self._decoder_for(Union[tuple(classes)] if classes else Header)  # noqa: UP007
        return self._decoder

    def _decoder_for(self, target: Any) -> Any:
        if self._json:
            return msgspec.json.Decoder(target)
        return msgspec.msgpack.Decoder(target)

    def _pydantic_event(self, envelope: Envelope, typed: _Typed) -> Envelope:
        model: Any = typed.entry.event_type
        raw = bytes(envelope.event)
        try:
            if self._json:
                event = model.model_validate_json(raw)
            else:
                event = model.model_validate(msgspec.msgpack.decode(raw))
        except Exception as exc:
            raise DecodeError(
                f"the payload of {typed.entry.name} event {envelope.id} is refused: {exc}",
                name=typed.entry.name,
                event_id=envelope.id,
            ) from None
        return msgspec.structs.replace(envelope, event=event)

    def _unsupported(self, entry: EventName, version: int, event_id: str | None) -> WireError:
        return UnsupportedVersion(
            f"{entry.name} version {version} is not supported here (this process reads "
            f"versions {entry.min_version} to {entry.version}); upgrade the consumer, or "
            "route older versions elsewhere",
            version=version,
            supported=(entry.min_version, entry.version),
            name=entry.name,
            event_id=event_id,
        )

    def _why_undecodable(self, data: bytes | bytearray | memoryview) -> WireError:
        """Read the headers alone to say which part of a refused message is wrong."""
        try:
            header: Header = self._header.decode(data)
        except Exception as exc:
            return DecodeError(f"not an eventcore {self.format} envelope: {exc}")
        entry = self.names.lookup(header.type)
        if entry is None:
            return UnknownEventType(
                f"unknown event type {header.type!r}: register it in this process to consume it",
                name=header.type,
                event_id=header.id,
            )
        if header.version is not None and not entry.accepts(header.version):
            return self._unsupported(entry, header.version, header.id)
        if entry.name in self._undecodable:
            return DecodeError(
                f"{entry.name} messages cannot be decoded: {self._undecodable[entry.name]}",
                name=entry.name,
                event_id=header.id,
            )
        try:
            self._decoder.decode(data)
        except Exception as exc:
            detail = str(exc)
        else:  # pragma: no cover - the full decode failed a moment ago
            detail = "unknown"
        return DecodeError(
            f"a {entry.name} message is refused: {detail}",
            name=entry.name,
            event_id=header.id,
        )


def _is_instance(event: Any, event_type: type) -> bool:
    try:
        return isinstance(event, event_type)
    except TypeError:  # TypedDict classes refuse isinstance(): their instances are dicts
        return isinstance(event, dict)


def _check_traceparent(traceparent: object, name: str) -> None:
    if not isinstance(traceparent, str) or TRACEPARENT.fullmatch(traceparent) is None:
        raise EncodeError(
            f"traceparent {traceparent!r} is not a W3C traceparent "
            "('00-<32 hex>-<16 hex>-<2 hex>')",
            name=name,
        )
