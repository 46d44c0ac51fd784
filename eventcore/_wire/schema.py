"""JSON Schema of each registered event type, keyed by its name.

msgspec describes dataclasses, attrs classes, Structs and TypedDicts
(``msgspec.json.schema_components``); pydantic describes its models
(``TypeAdapter.json_schema``). Shared parts go to one ``components`` mapping,
referenced with ``ref_template``. A type that cannot be described is kept, with
``schema=None`` and the reason in ``problem``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .kinds import SUPPORTED, Kind, kind_of
from .names import EventName, default_name


@dataclass(frozen=True)
class EventSchema:
    """The schema of one event type on the wire.

    :ivar entry: its name and versions
    :ivar schema: JSON Schema of the event (usually a ``$ref`` into the
        components), or None when it cannot be described
    :ivar problem: why it cannot be described, or None
    """

    entry: EventName
    schema: dict[str, Any] | None
    problem: str | None = None

    @property
    def python_type(self) -> str:
        """``module.QualName`` of the class."""
        return default_name(self.entry.event_type)


@dataclass(frozen=True)
class SchemaSet:
    """Schemas of several event types: per name, and their shared components."""

    events: dict[str, EventSchema]
    components: dict[str, dict[str, Any]]


def event_schemas(
    entries: Iterable[EventName], *, ref_template: str = "#/$defs/{name}"
) -> SchemaSet:
    """Describe every entry; sorted by name, components sorted by their name."""
    entries = sorted(entries, key=lambda e: e.name)
    events: dict[str, EventSchema] = {}
    components: dict[str, dict[str, Any]] = {}
    plain = [e for e in entries if kind_of(e.event_type) is Kind.MSGSPEC]
    for entry, schema, problem in _msgspec_schemas(plain, components, ref_template):
        events[entry.name] = EventSchema(entry, schema, problem)
    for entry in entries:
        if entry.name in events:
            continue
        if kind_of(entry.event_type) is Kind.PYDANTIC:
            schema, problem = _pydantic_schema(entry, components, ref_template)
            events[entry.name] = EventSchema(entry, schema, problem)
        else:
            events[entry.name] = EventSchema(entry, None, f"not {SUPPORTED}")
    return SchemaSet(
        events={name: events[name] for name in sorted(events)},
        components={name: components[name] for name in sorted(components)},
    )


def _msgspec_schemas(
    entries: list[EventName], components: dict[str, dict[str, Any]], ref_template: str
) -> list[tuple[EventName, dict[str, Any] | None, str | None]]:
    if not entries:
        return []
    import msgspec

    try:  # all at once: shared parts are described once
        refs, parts = msgspec.json.schema_components(
            [e.event_type for e in entries], ref_template=ref_template
        )
    except Exception:  # one type spoils the batch: describe each alone to find which
        out: list[tuple[EventName, dict[str, Any] | None, str | None]] = []
        for entry in entries:
            try:
                (ref,), parts = msgspec.json.schema_components(
                    [entry.event_type], ref_template=ref_template
                )
            except Exception as exc:
                out.append((entry, None, f"msgspec cannot describe it: {exc}"))
            else:
                problem = _merge(components, parts)
                out.append((entry, None if problem else dict(ref), problem))
        return out
    components.update(parts)
    return [(entry, dict(ref), None) for entry, ref in zip(entries, refs, strict=True)]


def _pydantic_schema(
    entry: EventName, components: dict[str, dict[str, Any]], ref_template: str
) -> tuple[dict[str, Any] | None, str | None]:
    from pydantic import TypeAdapter

    try:
        schema = TypeAdapter(entry.event_type).json_schema(
            ref_template=ref_template.replace("{name}", "{model}")  # pydantic's placeholder
        )
    except Exception as exc:
        return None, f"pydantic cannot describe it: {exc}"
    title = entry.event_type.__name__
    problem = _merge(components, {**schema.pop("$defs", {}), title: schema})
    if problem:
        return None, problem
    return {"$ref": ref_template.format(name=title)}, None


def _merge(components: dict[str, dict[str, Any]], parts: dict[str, Any]) -> str | None:
    """Add *parts* to *components*; the problem, if a name is taken by another schema."""
    clash = [n for n, part in parts.items() if n in components and components[n] != part]
    if clash:
        return (
            f"its schema part {clash[0]!r} has the name of another type's: "
            "rename one of the classes"
        )
    components.update(parts)
    return None
