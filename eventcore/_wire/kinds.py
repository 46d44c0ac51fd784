"""Which codec an event class takes: msgspec's or pydantic's, or none (never pickle)."""

from __future__ import annotations

import dataclasses
import enum
import sys
import typing


class Kind(str, enum.Enum):
    """How a class of events is encoded."""

    #: dataclasses, attrs classes, msgspec Structs, TypedDicts: encoded by msgspec
    MSGSPEC = "msgspec"
    #: pydantic models: their own ``model_dump_json`` / ``model_validate_json``
    PYDANTIC = "pydantic"
    #: anything else: refused with a clear error
    UNSUPPORTED = "unsupported"


def kind_of(event_type: type) -> Kind:
    """Classify *event_type* without importing msgspec or pydantic."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(event_type, pydantic.BaseModel):
        return Kind.PYDANTIC
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(event_type, msgspec.Struct):
        return Kind.MSGSPEC
    if dataclasses.is_dataclass(event_type) or hasattr(event_type, "__attrs_attrs__"):
        return Kind.MSGSPEC
    if typing.is_typeddict(event_type) or _is_ext_typeddict(event_type):
        return Kind.MSGSPEC
    return Kind.UNSUPPORTED


def _is_ext_typeddict(event_type: type) -> bool:
    ext = sys.modules.get("typing_extensions")
    return ext is not None and bool(ext.is_typeddict(event_type))


SUPPORTED = "a dataclass, an attrs class, a msgspec Struct, a TypedDict or a pydantic model"
