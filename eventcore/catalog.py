"""A catalog of a dispatcher's events and handlers: AsyncAPI 3.0, JSON Schema or Markdown.

One channel and one message per event type, one ``receive`` operation per
handler and type it receives; each type's settings as ``x-eventcore-*`` fields.
Output is sorted and stable, so a CI job can diff it (``eventcore catalog
app:bus --check catalog.json``). Describing msgspec-able types needs msgspec
(``eventcore-py[wire]``); pydantic models need pydantic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._config import Retry, TypeConfig
from ._deadletters import DeadLetter, DeadLetterReason
from ._dispatcher import Dispatcher
from ._subscription import Subscription
from ._wire.errors import InvalidEventName
from ._wire.names import EventName, default_name
from ._wire.schema import EventSchema, event_schemas

Format = Literal["asyncapi", "jsonschema", "markdown"]
FORMATS: tuple[Format, ...] = ("asyncapi", "jsonschema", "markdown")

ASYNCAPI_VERSION = "3.0.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class CatalogEntry:
    """One event type of a dispatcher, as the catalog shows it.

    :ivar entry: its name and versions (registered, or what it would get)
    :ivar config: its settings in force
    :ivar subscriptions: the subscriptions that receive it (to it or a base class)
    :ivar problem: why it has no valid wire name, or None
    """

    entry: EventName
    config: TypeConfig
    subscriptions: tuple[Subscription[Any], ...]
    problem: str | None = None


def entries(bus: Dispatcher) -> list[CatalogEntry]:
    """Every event type *bus* knows (registered, subscribed or configured), by name.

    :class:`~eventcore.DeadLetter` is left out: dead letters stay in the process.
    Types without a registered name get what ``bus.register`` would give them,
    marked ``defaulted``; nothing is registered.
    """
    subs = bus.subscriptions()
    types = {e.event_type for e in bus.names}
    types.update(s.event_type for s in subs)
    types.update(bus.configured_types())
    types.discard(DeadLetter)
    out = []
    for event_type in types:
        problem = None
        try:
            entry = bus.names.describe(event_type)
        except InvalidEventName as exc:
            fallback = re.sub(r"[^A-Za-z0-9_.-]", "_", default_name(event_type))
            entry = EventName(fallback, 1, event_type, defaulted=True)
            problem = f"{exc}: register it with an explicit name"
        receivers = tuple(s for s in subs if _receives(event_type, s.event_type))
        out.append(CatalogEntry(entry, bus.config(event_type), receivers, problem))
    return sorted(out, key=lambda c: c.entry.name)


def _receives(event_type: type, subscribed: type) -> bool:
    """Whether a subscription to *subscribed* receives *event_type* (itself or a subclass)."""
    try:
        return issubclass(event_type, subscribed)
    except TypeError:  # a TypedDict refuses class checks: its own subscriptions only
        return event_type is subscribed


def _path(obj: object) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}"


def _retry(retry: Retry | None) -> dict[str, Any] | None:
    if retry is None:
        return None
    return {
        "attempts": retry.attempts,
        "backoff": retry.backoff,
        "multiplier": retry.multiplier,
        "maxBackoff": retry.max_backoff,
        "jitter": retry.jitter,
        "on": sorted(_path(t) for t in retry.on),
    }


def _jsonable(value: object) -> object:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _dead_letter_reasons(config: TypeConfig) -> list[str]:
    reasons = {DeadLetterReason.HANDLER_FAILED, DeadLetterReason.SHUTDOWN}
    if config.overflow.name == "DROP_NEWEST":
        reasons.add(DeadLetterReason.DROPPED_NEWEST)
    if config.overflow.name == "DROP_OLDEST":
        reasons.add(DeadLetterReason.EVICTED)
    return sorted(r.value for r in reasons)


def _settings(item: CatalogEntry, dead_letter_handlers: list[str]) -> dict[str, Any]:
    c = item.config
    return {
        "x-eventcore-queue-size": c.queue_size,
        "x-eventcore-concurrency": c.concurrency,
        "x-eventcore-overflow": c.overflow.name.lower(),
        "x-eventcore-key": None if c.key is None else _path(c.key),
        "x-eventcore-handler-timeout": c.handler_timeout,
        "x-eventcore-retry": _retry(c.retry),
        "x-eventcore-dead-letters": {
            "reasons": _dead_letter_reasons(c),
            "handlers": dead_letter_handlers,
        },
    }


def _operation_id(sub: Subscription[Any], name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{_path(sub.handler)}.on.{name}")


def _schemas(items: list[CatalogEntry], ref_template: str) -> tuple[dict[str, Any], Any]:
    schemas = event_schemas([i.entry for i in items], ref_template=ref_template)
    return schemas.events, schemas.components


def _flags(item: CatalogEntry, schema: EventSchema) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "x-eventcore-version": item.entry.version,
        "x-eventcore-min-version": item.entry.min_version,
        "x-eventcore-python-type": default_name(item.entry.event_type),
        "x-eventcore-name-defaulted": item.entry.defaulted,
    }
    problem = item.problem or schema.problem
    if problem is not None:
        flags["x-eventcore-problem"] = problem
    return flags


def asyncapi(
    bus: Dispatcher, *, title: str = "eventcore events", version: str = "0.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of *bus*: what it receives, and how each type is handled.

    Each message's payload is the envelope (see :mod:`eventcore.wire`), its
    ``data`` the event's schema; a type that cannot be described gets an empty
    ``data`` schema and an ``x-eventcore-problem``.
    """
    from ._wire.envelope import envelope_schema

    items = entries(bus)
    schemas, components = _schemas(items, "#/components/schemas/{name}")
    dead = sorted(_path(s.handler) for s in bus.subscriptions() if s.event_type is DeadLetter)
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for item in items:
        name = item.entry.name
        schema = schemas[name]
        messages[name] = {
            "name": name,
            "title": item.entry.event_type.__name__,
            **_summary(item.entry.event_type),
            "contentType": "application/json",
            "payload": envelope_schema(item.entry, schema.schema or {}),
            **_flags(item, schema),
        }
        channels[name] = {
            "address": name,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            **_settings(item, dead),
        }
        for sub in item.subscriptions:
            op_id = _operation_id(sub, name)
            n = 1
            while op_id in operations:  # one handler subscribed twice: subscription order
                n += 1
                op_id = f"{_operation_id(sub, name)}-{n}"
            operations[op_id] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
                "x-eventcore-handler": _path(sub.handler),
                "x-eventcore-subscribed-to": _path(sub.event_type),
                "x-eventcore-filter": None if sub.filter is None else _path(sub.filter),
                "x-eventcore-timeout": (
                    sub.timeout if sub.timeout is not None else item.config.handler_timeout
                ),
                "x-eventcore-retry": _retry(sub.retry or item.config.retry),
                "x-eventcore-principal": _jsonable(sub.principal),
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Event types and handlers of an eventcore Dispatcher.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": components, "messages": messages},
    }


def _summary(event_type: type) -> dict[str, str]:
    doc = (event_type.__doc__ or "").strip()
    if not doc or doc.startswith(f"{event_type.__name__}("):  # a dataclass's own signature
        return {}
    return {"summary": " ".join(doc.split("\n\n")[0].split())}


def json_schema(bus: Dispatcher) -> dict[str, Any]:
    """JSON Schema of every event type of *bus*, under ``events`` by name."""
    items = entries(bus)
    schemas, components = _schemas(items, "#/$defs/{name}")
    events = {}
    for item in items:
        schema = schemas[item.entry.name]
        events[item.entry.name] = {"schema": schema.schema, **_flags(item, schema)}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "eventcore events",
        "events": events,
        "$defs": components,
    }


def markdown(bus: Dispatcher) -> str:
    """A Markdown table of the event types of *bus* and their handlers."""
    items = entries(bus)
    lines = [
        "# Events",
        "",
        "| name | version | type | queue | concurrency | overflow | key | handlers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in items:
        c = item.config
        handlers = ", ".join(f"`{_path(s.handler)}`" for s in item.subscriptions) or "—"
        name = f"`{item.entry.name}`" + (" (default name)" if item.entry.defaulted else "")
        if item.problem:
            name += " ⚠"
        lines.append(
            f"| {name} | {item.entry.version} | `{default_name(item.entry.event_type)}` "
            f"| {c.queue_size} | {c.concurrency} | {c.overflow.name.lower()} "
            f"| {'`' + _path(c.key) + '`' if c.key else '—'} | {handlers} |"
        )
    problems = [(i.entry.name, i.problem) for i in items if i.problem]
    if problems:
        lines += ["", "## Problems", ""] + [f"- `{n}`: {p}" for n, p in problems]
    return "\n".join(lines) + "\n"


_RENDER: dict[str, Callable[[Dispatcher], Any]] = {
    "asyncapi": asyncapi,
    "jsonschema": json_schema,
    "markdown": markdown,
}


def render(bus: Dispatcher, format: Format = "asyncapi") -> str:
    """The catalog of *bus* as text: sorted JSON with a final newline, or Markdown."""
    if format not in _RENDER:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    doc = _RENDER[format](bus)
    return doc if isinstance(doc, str) else dumps(doc)


def render_asyncapi(bus: Dispatcher, *, title: str, version: str) -> str:
    """The AsyncAPI document of *bus* as sorted JSON, with its ``info`` title and version."""
    return dumps(asyncapi(bus, title=title, version=version))


def dumps(doc: dict[str, Any]) -> str:
    """Sorted, indented JSON with a final newline: stable, so diffs show real changes."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
