"""The envelope: the one place that defines what an event looks like on the wire.

JSON (MessagePack carries the same fields)::

    {"type": "orders.placed",            the registered name
     "id": "01938a5e-7c1f-7a3b-...",     UUIDv7: unique, time-ordered
     "version": 1,                       the publisher's version of the type
     "time": "2026-11-30T07:43:41.12Z",  when the message was accepted for sending
     "key": "A1",                        the type's key(event), when it has one
     "traceparent": "00-...-...-01",     W3C trace context of the publisher, optional
     "principal": "alice",               who published, when known (a JSON value)
     "data": {...}}                      the event itself

Optional headers are left out when empty; unknown fields are ignored when read,
so headers can be added without breaking older consumers.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

import msgspec

from .kinds import Kind
from .names import EventName

TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
"""W3C ``traceparent``: version-trace_id-parent_id-flags, lowercase hex."""


class Envelope(msgspec.Struct, frozen=True, gc=False, omit_defaults=True, kw_only=True):
    """An event with the headers it travels with; what :meth:`Codec.decode` returns.

    :ivar id: the event id (a UUIDv7 string); redeliveries carry the same one
    :ivar version: the version the publisher wrote
    :ivar time: when the message was accepted for sending (UTC)
    :ivar key: the type's key of the event, or None
    :ivar traceparent: the publisher's W3C trace context, or None
    :ivar principal: who published (a JSON value: lists come back as lists), or None
    :ivar event: the event, an instance of the registered type
    """

    id: str
    version: int
    time: datetime
    key: Any = None
    traceparent: str | None = None
    principal: Any = None
    event: Any = msgspec.field(default=None, name="data")

    @property
    def name(self) -> str:
        """The event's registered type name."""
        return str(type(self).__struct_config__.tag)


def envelope_class(entry: EventName, kind: Kind) -> type[Envelope]:
    """The envelope of one event type: tagged with its name, typed with its class.

    A pydantic model travels as raw JSON (or MessagePack) that the model itself
    encodes and validates. One class per name, type and kind, shared by every
    codec: typing and msgspec cache unions of these classes for the life of the
    process, so a class per codec kept every codec's classes alive (found by the
    soak: a dispatcher restarted with a broker transport grew each time).
    """
    return _envelope_class(entry.name, entry.event_type, kind)


@functools.lru_cache(maxsize=1024)
def _envelope_class(name: str, event_type: type, kind: Kind) -> type[Envelope]:
    payload: Any = msgspec.Raw if kind is Kind.PYDANTIC else event_type
    cls: Any = msgspec.defstruct(
        f"Envelope[{name}]",
        [("event", payload, msgspec.field(name="data"))],
        bases=(Envelope,),
        tag_field="type",
        tag=name,
        frozen=True,
        gc=False,
        omit_defaults=True,
        kw_only=True,
        module=__name__,
    )
    return cls  # type: ignore[no-any-return]


class Header(msgspec.Struct, gc=False):
    """The envelope's fields read without the payload, to say why a message was refused."""

    type: str
    id: str | None = None
    version: int | None = None


def envelope_schema(entry: EventName, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of the envelope of *entry*, with *payload* as the schema of ``data``."""
    return {
        "type": "object",
        "title": f"{entry.name} envelope",
        "required": ["type", "id", "version", "time", "data"],
        "properties": {
            "type": {"const": entry.name},
            "id": {"type": "string", "description": "event id, a UUIDv7"},
            "version": {
                "type": "integer",
                "minimum": entry.min_version,
                "maximum": entry.version,
            },
            "time": {"type": "string", "format": "date-time"},
            "key": {"description": "the type's key of the event"},
            "traceparent": {"type": "string", "pattern": f"^{TRACEPARENT.pattern}$"},
            "principal": {"description": "who published"},
            "data": payload,
        },
    }
