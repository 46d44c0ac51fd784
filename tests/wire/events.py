"""Event types of every kind the codec supports, with explicit wire names."""

import dataclasses
import datetime
import enum
import uuid
from typing import TypedDict

import attrs
import msgspec
import pydantic

from eventcore.wire import event


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@event("test.dataclass")
@dataclasses.dataclass(frozen=True)
class DataclassEvent:
    """A dataclass event."""

    order_id: str
    total: float
    count: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str | None = None
    size: Size = Size.SMALL


@event("test.attrs")
@attrs.frozen
class AttrsEvent:
    """An attrs event."""

    order_id: str
    at: datetime.datetime
    total: float = 0.0


@event("test.struct")
class StructEvent(msgspec.Struct, frozen=True):
    """A msgspec Struct event."""

    order_id: str
    ref: uuid.UUID
    lines: dict[str, int] = {}


@event("test.typeddict")
class TypedDictEvent(TypedDict):
    """A TypedDict event."""

    order_id: str
    total: float


@event("test.pydantic")
class PydanticEvent(pydantic.BaseModel):
    """A pydantic event."""

    order_id: str
    total: float
    lines: list[int] = []
    note: str | None = None


ALL = (DataclassEvent, AttrsEvent, StructEvent, TypedDictEvent, PydanticEvent)


class Plain:
    """Not an event class the wire supports."""

    def __init__(self, x: int) -> None:
        self.x = x
