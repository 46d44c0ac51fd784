"""Events on the wire: stable names, the envelope, the codec and JSON Schemas.

The shared ground of the broker transports (NATS JetStream, Redis Streams)::

    from eventcore.wire import Codec, event

    @event("orders.placed", version=1)
    @dataclass
    class OrderPlaced:
        order_id: str
        total: float

    bus.register(OrderPlaced)                 # or: bus.register(T, name=..., version=...)
    codec = Codec.for_dispatcher(bus)         # JSON; format="msgpack" for MessagePack
    data = codec.encode(OrderPlaced("A1", 10.0))
    envelope = codec.decode(data)             # .event, .id, .name, .version, .time, ...

Names, errors and schemas need only the standard library; :class:`Codec` and
:class:`Envelope` need msgspec (``pip install "eventcore-py[wire]"``), and pydantic
models need pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._wire.errors import DecodeError as DecodeError
from ._wire.errors import DuplicateEventName as DuplicateEventName
from ._wire.errors import EncodeError as EncodeError
from ._wire.errors import InvalidEventName as InvalidEventName
from ._wire.errors import MessageTooLarge as MessageTooLarge
from ._wire.errors import UnknownEventType as UnknownEventType
from ._wire.errors import UnsupportedVersion as UnsupportedVersion
from ._wire.errors import WireError as WireError
from ._wire.errors import WireReason as WireReason
from ._wire.ids import current_event_id as current_event_id
from ._wire.ids import event_id_time as event_id_time
from ._wire.ids import new_event_id as new_event_id
from ._wire.kinds import Kind as Kind
from ._wire.kinds import kind_of as kind_of
from ._wire.names import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._wire.names import EventName as EventName
from ._wire.names import EventNames as EventNames
from ._wire.names import EventNameWarning as EventNameWarning
from ._wire.names import check_name as check_name
from ._wire.names import event as event
from ._wire.schema import EventSchema as EventSchema
from ._wire.schema import SchemaSet as SchemaSet
from ._wire.schema import event_schemas as event_schemas

if TYPE_CHECKING:
    from ._wire.codec import DEFAULT_MAX_SIZE as DEFAULT_MAX_SIZE
    from ._wire.codec import Codec as Codec
    from ._wire.envelope import Envelope as Envelope
    from ._wire.envelope import envelope_schema as envelope_schema

#: the names that need msgspec, imported on first use
_NEED_MSGSPEC = {
    "Codec": "codec",
    "DEFAULT_MAX_SIZE": "codec",
    "Envelope": "envelope",
    "envelope_schema": "envelope",
}

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_NAME_LENGTH",
    "Codec",
    "DecodeError",
    "DuplicateEventName",
    "EncodeError",
    "Envelope",
    "EventName",
    "EventNameWarning",
    "EventNames",
    "EventSchema",
    "InvalidEventName",
    "Kind",
    "MessageTooLarge",
    "SchemaSet",
    "UnknownEventType",
    "UnsupportedVersion",
    "WireError",
    "WireReason",
    "check_name",
    "current_event_id",
    "envelope_schema",
    "event",
    "event_id_time",
    "event_schemas",
    "kind_of",
    "new_event_id",
]


def __getattr__(name: str) -> Any:
    module = _NEED_MSGSPEC.get(name)
    if module is None:
        raise AttributeError(f"module 'eventcore.wire' has no attribute {name!r}")
    try:
        from importlib import import_module

        found = getattr(import_module(f"eventcore._wire.{module}"), name)
    except ImportError as exc:
        if exc.name != "msgspec":
            raise
        raise ImportError(
            f"eventcore.wire.{name} needs msgspec: pip install 'eventcore-py[wire]'",
            name="msgspec",
        ) from exc
    globals()[name] = found
    return found
