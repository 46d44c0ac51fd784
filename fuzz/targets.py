"""The fuzz targets: bytes in; a crash is any exception but the typed errors documented.

Each target is a plain function, so the committed seeds replay without atheris
(``tests/test_fuzz.py``); ``python -m fuzz`` runs them under atheris.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import re
import tempfile
import typing
from collections.abc import Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import attrs
import msgspec
import pydantic

from eventcore import Dispatcher, EventcoreError, Overflow, Retry
from eventcore.__main__ import main as cli
from eventcore.catalog import FORMATS, render
from eventcore.dashboard import Dashboard
from eventcore.dashboard._core import Request
from eventcore.dashboard._http import Reply, Stream, basic_auth, handle
from eventcore.dashboard.asgi import DashboardApp
from eventcore.dashboard.serve import _connection
from eventcore.transports.nats.layout import stream_name
from eventcore.wire import (
    MAX_NAME_LENGTH,
    Codec,
    EventNames,
    InvalidEventName,
    MessageTooLarge,
    WireError,
    check_name,
    event,
)
from eventcore.wire import Envelope as Envelope

from ._input import Input

# -- one event type of each kind the codec supports ---------------------------------


@event("fuzz.dataclass", version=3)
@dataclasses.dataclass(frozen=True)
class DataclassEvent:
    """A dataclass."""

    id: str
    n: int
    amount: float
    tags: list[str]
    meta: dict[str, int]
    note: str | None = None
    at: datetime | None = None


@event("fuzz.attrs", version=2)
@attrs.define(frozen=True)
class AttrsEvent:
    """An attrs class."""

    id: str
    n: int
    flags: list[bool]
    nested: dict[str, list[float]] = attrs.field(factory=dict)


@event("fuzz.struct")
class StructEvent(msgspec.Struct, frozen=True):
    """A msgspec Struct."""

    id: str
    n: int
    raw: bytes = b""
    pair: tuple[int, str] | None = None


@event("fuzz.pydantic", version=2)
class PydanticEvent(pydantic.BaseModel):
    """A pydantic model, with a validator of its own."""

    id: str
    n: int = pydantic.Field(ge=0)
    items: list[dict[str, str]] = []
    when: datetime | None = None


class TypedDictEvent(typing.TypedDict):
    """A TypedDict (its instances are dicts)."""

    id: str
    n: int
    values: list[int]


KINDS: tuple[type, ...] = (DataclassEvent, AttrsEvent, StructEvent, PydanticEvent, TypedDictEvent)


def _names() -> EventNames:
    names = EventNames()
    for cls in KINDS:
        if cls is TypedDictEvent:
            names.register(cls, name="fuzz.typeddict", version=2, min_version=2)
        else:
            names.register(cls, min_version=1)
    return names


CODECS: dict[str, Codec] = {
    "json": Codec(_names(), format="json", max_size=64 * 1024),
    "msgpack": Codec(_names(), format="msgpack", max_size=64 * 1024),
}
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _decode_and_reencode(codec: Codec, data: bytes) -> None:
    """Decode; what decodes must encode, and encoding must be a fixed point."""
    try:
        envelope = codec.decode(data)
    except WireError:
        return
    entry = codec.names.lookup(envelope.name)
    assert entry is not None, envelope.name
    traceparent = envelope.traceparent
    if traceparent is not None and _TRACEPARENT.fullmatch(traceparent) is None:
        traceparent = None  # decoding carries any string; encoding checks it
    options: dict[str, Any] = {
        "event_type": entry.event_type,
        "key": envelope.key,
        "principal": envelope.principal,
        "traceparent": traceparent,
        "id": envelope.id,
        "time": envelope.time,
    }
    try:
        first = codec.encode(envelope.event, **options)
    except MessageTooLarge:
        return
    again = codec.decode(first)
    assert again.name == envelope.name
    second = codec.encode(again.event, **options)
    assert first == second, (first, second)


def envelope_json(data: bytes) -> None:
    """The JSON envelope decoder (any bytes from a broker)."""
    _decode_and_reencode(CODECS["json"], data)


def envelope_msgpack(data: bytes) -> None:
    """The MessagePack envelope decoder (any bytes from a broker)."""
    _decode_and_reencode(CODECS["msgpack"], data)


def codec_kinds(data: bytes) -> None:
    """Each kind's codec: a fuzzed payload put in a valid envelope of a chosen type.

    The envelope's headers are right, so the fuzzer spends its time in the
    payload of each kind of class.
    """
    given = Input(data)
    codec = given.pick(list(CODECS.values()))
    cls = given.pick(KINDS)
    entry = codec.names.get(cls)
    assert entry is not None
    version = given.pick((entry.version, entry.min_version, 0, entry.version + 1))
    payload = given.rest()
    header = {"type": entry.name, "id": "0193a5e0-0000-7000-8000-000000000000", "version": version,
              "time": "2026-12-01T00:00:00Z"}  # fmt: skip
    if codec.format == "json":
        message = json.dumps(header).encode()[:-1] + b',"data":' + payload + b"}"
    else:
        try:  # JSON payloads, carried as MessagePack
            message = msgspec.msgpack.encode({**header, "data": msgspec.json.decode(payload)})
        except (msgspec.DecodeError, OverflowError):  # not JSON, or an int MessagePack lacks
            message = msgspec.msgpack.encode({**header, "data": payload.decode("latin-1")})
    _decode_and_reencode(codec, message)


def event_names(data: bytes) -> None:
    """Name validation: what passes must be a usable NATS subject and Redis key."""
    given = Input(data)
    name = given.rest().decode("utf-8" if given.flag() else "latin-1", "replace")
    try:
        checked = check_name(name)
    except InvalidEventName:
        return
    assert checked == name
    assert 0 < len(name) <= MAX_NAME_LENGTH
    assert name.isascii()
    assert name.isprintable()
    assert all(token and re.fullmatch(r"[A-Za-z0-9_-]+", token) for token in name.split("."))
    stream = stream_name("eventcore", "group", name)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", stream), stream
    cls = event(name, version=1)(type("Named", (), {}))
    names = EventNames()
    assert names.register(cls).name == name
    assert names.lookup(name) is not None


# -- the dashboard ------------------------------------------------------------------

_STATUSES = {200, 308, 400, 401, 403, 404, 405, 409, 413, 415, 503}
_METHODS = ("GET", "POST", "HEAD", "PUT", "OPTIONS", "get", "")
_ROUTES = ("", "/", "/index.html", "/app.js", "/snapshot.json", "/history.json", "/events",
           "/action")  # fmt: skip
_HEADERS = ("host", "origin", "x-csrf-token", "content-type", "sec-fetch-site", "authorization",
            "last-event-id", "forwarded", "x-forwarded-for", "x-real-ip")  # fmt: skip
_CLIENTS = ("127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", None, "")


@dataclasses.dataclass(frozen=True)
class Ping:
    """An event type for the dashboard to show and act on."""

    n: int


def _check_reply(answer: Reply | Stream) -> None:
    assert answer.status in _STATUSES, answer.status
    for name, value in answer.headers:
        (name + value).encode("latin-1")  # what every adapter does with them


async def _drain(answer: Reply | Stream) -> None:
    if isinstance(answer, Stream):
        try:
            chunks = 0
            async for _ in answer.body:
                chunks += 1
                if chunks >= 3:
                    break
        finally:
            answer.release()
            await answer.body.aclose()  # type: ignore[attr-defined]


def _dashboard(bus: Dispatcher, given: Input) -> Dashboard:
    auth = basic_auth("ops", "s3cret") if given.flag() else None
    return Dashboard(bus, auth=auth, allow_actions=given.flag(), show_payloads=given.flag(),
                     interval=0.001, heartbeat=0.001, linger=0.0, max_stream=0.01, max_viewers=2,
                     allowed_origins=("https://ops.example",))  # fmt: skip


def _request(given: Input, token: str) -> tuple[str, str, dict[str, str], str | None, bytes]:
    method = given.pick(_METHODS) if given.flag() else given.text(8)
    route = given.pick(_ROUTES) if given.flag() else given.text(64)
    headers: dict[str, str] = {}
    for _ in range(given.byte() % 8):
        name = given.pick(_HEADERS) if given.flag() else given.text(16).lower()
        take_token = name == "x-csrf-token" and given.flag()
        headers[name] = token if take_token else given.text(64)
    client = given.pick(_CLIENTS)
    body = given.rest()
    return method, route, headers, client, body


async def _one_request(given: Input) -> None:
    bus = Dispatcher()
    bus.subscribe(Ping, _ignore)
    dashboard = _dashboard(bus, given)
    async with bus, dashboard:
        await bus.publish(Ping(1))
        method, route, headers, client, body = _request(given, dashboard.csrf_token)
        answer = await handle(dashboard, Request(method, route, headers, client, body))
        _check_reply(answer)
        await _drain(answer)


async def _ignore(event: Any) -> None:
    """A handler that does nothing."""


def dashboard_request(data: bytes) -> None:
    """The framework-neutral request handler: method, route, headers, client, body."""
    asyncio.run(_one_request(Input(data)))


class _Peer:
    """A socket stream stand-in for the small server: the fuzz bytes, then end of stream."""

    def __init__(self, data: bytes, split: int) -> None:
        self.chunks = [data[:split], data[split:]] if split else [data]
        self.sent: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.chunks:
            raise anyio.EndOfStream
        return self.chunks.pop(0)

    async def send(self, item: bytes) -> None:
        self.sent.append(item)

    def extra(self, attribute: object, default: object = None) -> object:
        return ("127.0.0.1", 40000)

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> _Peer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


async def _one_exchange(given: Input) -> None:
    bus = Dispatcher()
    bus.subscribe(Ping, _ignore)
    dashboard = _dashboard(bus, given)
    split = given.byte()
    async with bus, dashboard:
        peer = _Peer(given.rest(), split)
        with anyio.fail_after(5):
            await _connection(dashboard, peer)  # type: ignore[arg-type]
        if peer.sent:
            status = peer.sent[0].split(b" ", 2)[1]
            assert int(status) in _STATUSES, peer.sent[0][:80]


def dashboard_http(data: bytes) -> None:
    """The small server's parsing of raw HTTP bytes (request line, headers, body)."""
    asyncio.run(_one_exchange(Input(data)))


async def _one_asgi(given: Input) -> None:
    bus = Dispatcher()
    dashboard = _dashboard(bus, given)
    method = given.pick(_METHODS[:3])
    path = "/dash" + given.unicode(64)
    headers = [(given.raw(16).lower(), given.raw(64)) for _ in range(given.byte() % 6)]
    body = given.rest()
    scope = {"type": "http", "method": method, "path": path, "root_path": "/dash",
             "headers": headers, "client": (given.pick(_CLIENTS[:4]), 1234)}  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if len(sent) > 4:
            raise OSError("the client went away")  # end an event stream

    async with bus, dashboard:
        try:
            await DashboardApp(dashboard)(scope, receive, send)
        except OSError:
            pass
    assert sent, "no answer"
    assert sent[0]["status"] in _STATUSES, sent[:1]


def dashboard_asgi(data: bytes) -> None:
    """The ASGI adapter: path under a mount point, raw header bytes, the body."""
    asyncio.run(_one_asgi(Input(data)))


# -- the catalog --------------------------------------------------------------------

_FIELD_TYPES: tuple[Any, ...] = (int, str, float, bool, bytes, datetime, list[int],
                                 dict[str, float], "int | None", typing.Any, object)  # fmt: skip
_ALLOWED_SETUP = (EventcoreError, ValueError, TypeError)


def _event_class(given: Input, index: int, earlier: list[type]) -> type:
    """A class of one of the kinds the wire supports (or none), sometimes a subclass."""
    fields: list[tuple[str, Any]] = [
        (f"f{i}_{re.sub(r'[^a-z0-9_]', '', given.text(8))}", given.pick(_FIELD_TYPES))
        for i in range(given.byte() % 4)
    ]
    kind = given.byte() % 6
    name = f"E{index}"
    cls: Any
    if kind == 1:
        typed_dict: Any = typing.TypedDict
        cls = typed_dict(name, dict(fields))
    elif kind == 2:
        cls = msgspec.defstruct(name, [(n, t if t is not object else Any) for n, t in fields])
    elif kind == 3:
        model_fields: Any = {n: (t if t is not object else Any, ...) for n, t in fields}
        cls = pydantic.create_model(name, **model_fields)
    elif kind == 4:
        cls = attrs.make_class(name, [n for n, _ in fields])
    elif kind == 5 and earlier and dataclasses.is_dataclass(earlier[-1]):
        cls = dataclasses.make_dataclass(name, fields, bases=(earlier[-1],))
    else:
        cls = dataclasses.make_dataclass(name, fields)
    cls.__qualname__ = given.unicode(32) or name
    cls.__module__ = given.unicode(32) or "fuzz"
    cls.__doc__ = given.unicode(64) if given.flag() else None
    return cls  # type: ignore[no-any-return]


def _handler(given: Input) -> Callable[[Any], Any]:
    async def handler(event: Any) -> None:
        pass

    handler.__qualname__ = given.unicode(24) or "handler"
    handler.__module__ = given.unicode(24) or "fuzz"
    return handler


def _build_bus(given: Input) -> Dispatcher:
    bus = Dispatcher()
    made: list[type] = []
    for index in range(1 + given.byte() % 4):
        try:
            cls = _event_class(given, index, made)
        except (TypeError, ValueError, pydantic.PydanticUserError):
            continue  # a combination a library refuses to build: not eventcore's
        made.append(cls)
        try:
            if given.flag():
                bus.register(cls, name=given.text(40), version=1 + given.byte() % 3)
            if given.flag():
                bus.configure(
                    cls,
                    queue_size=given.byte() - 8,
                    concurrency=given.byte() % 5,
                    overflow=given.pick(list(Overflow)),
                    handler_timeout=given.pick((None, 1.0, -1.0, float("nan"))),
                    retry=given.pick((None, Retry(attempts=2))),
                )
            for _ in range(given.byte() % 3):
                bus.subscribe(cls, _handler(given), principal=given.pick((None, "p", ("a", 1))))
        except _ALLOWED_SETUP:
            continue
    return bus


def catalog(data: bytes) -> None:
    """The catalog of a dispatcher of fuzzed types, names, settings and handlers."""
    given = Input(data)
    bus = _build_bus(given)
    for format in FORMATS:
        text = render(bus, format)
        if format != "markdown":
            json.loads(text)


def _check_bus() -> Dispatcher:
    bus = Dispatcher()
    for cls in KINDS:
        bus.register(cls, name=None if cls is not TypedDictEvent else "fuzz.typeddict")
        bus.subscribe(cls, _ignore)
    return bus


CHECK_BUS = _check_bus()
_SCRATCH = tempfile.TemporaryDirectory(prefix="eventcore-fuzz-")


def catalog_check(data: bytes) -> None:
    """``eventcore catalog --check`` against a committed file of any bytes."""
    given = Input(data)
    format = given.pick(FORMATS)
    committed = Path(_SCRATCH.name) / "catalog"
    committed.write_bytes(given.rest())
    argv = ["catalog", "fuzz.targets:CHECK_BUS", "--format", format, "--check", str(committed)]
    code: object = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli(argv)
        except SystemExit as exc:
            code = exc.code
    assert code in (0, 1), code  # up to date, or out of date with the diff


TARGETS: dict[str, Callable[[bytes], None]] = {
    "envelope_json": envelope_json,
    "envelope_msgpack": envelope_msgpack,
    "codec_kinds": codec_kinds,
    "event_names": event_names,
    "dashboard_request": dashboard_request,
    "dashboard_http": dashboard_http,
    "dashboard_asgi": dashboard_asgi,
    "catalog": catalog,
    "catalog_check": catalog_check,
}
