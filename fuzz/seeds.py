"""Write the seed corpus (``python -m fuzz.seeds``): valid inputs of every target, so the
fuzzer starts inside each format instead of at random bytes. The output is committed,
beside the inputs a long run kept (copied from ``fuzz/out/<target>/corpus``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from eventcore.catalog import FORMATS, render

from .targets import (
    CODECS,
    AttrsEvent,
    DataclassEvent,
    PydanticEvent,
    StructEvent,
    TypedDictEvent,
)

CORPUS = Path(__file__).parent / "corpus"
_TIME = datetime(2026, 12, 1, tzinfo=timezone.utc)
_ID = "0193a5e0-0000-7000-8000-000000000000"
_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _events() -> list[tuple[object, type]]:
    return [
        (DataclassEvent("a", 1, 2.5, ["x"], {"k": 1}, "note", _TIME), DataclassEvent),
        (AttrsEvent("b", 2, [True, False], {"f": [1.5]}), AttrsEvent),
        (StructEvent("c", 3, b"\x00\xff", (1, "one")), StructEvent),
        (PydanticEvent(id="d", n=4, items=[{"a": "b"}], when=_TIME), PydanticEvent),
        ({"id": "e", "n": 5, "values": [1, 2]}, TypedDictEvent),
    ]


def _envelopes(format: str) -> Iterator[bytes]:
    codec = CODECS[format]
    for event, _ in _events()[:4]:
        yield codec.encode(event, id=_ID, time=_TIME, key="k1", principal="alice",
                           traceparent=_TRACE)  # fmt: skip
    yield codec.encode(
        {"id": "e", "n": 5, "values": [1, 2]}, event_type=TypedDictEvent, id=_ID, time=_TIME
    )
    if format == "json":
        yield b'{"type":"fuzz.unknown","id":"x","version":1,"time":"2026-12-01T00:00:00Z"}'
        yield b'{"type":"fuzz.dataclass","id":"x","version":9,"data":{}}'
    else:
        yield msgspec.msgpack.encode({"type": "fuzz.unknown", "id": "x", "version": 1})


def _kinds() -> Iterator[bytes]:
    for codec_index in range(2):
        for kind_index, (event, _) in enumerate(_events()):
            payload = msgspec.json.encode(
                event.model_dump(mode="json") if hasattr(event, "model_dump") else event
            )
            yield bytes([codec_index, kind_index, 0]) + payload


def _names() -> Iterator[bytes]:
    for name in ("orders.placed", "a", "a-b_c.D9", "a..b", "orders.*", "x" * 201, "é.a", " a"):
        yield b"\x01" + name.encode()


def _request(method: int, route: int, headers: list[tuple[int, bytes]], body: bytes) -> bytes:
    # auth, actions, payloads flags; method by index; route by index; headers; client 0
    out = bytes([0, 1, 1, 1, method, 1, route, len(headers)])
    for index, value in headers:
        out += bytes([1, index]) + (b"\x01" if index == 2 else bytes([len(value)]) + value)
    return out + bytes([0]) + body


def _requests() -> Iterator[bytes]:
    host = (0, b"127.0.0.1:8089")
    yield _request(0, 1, [host], b"")
    yield _request(0, 4, [host], b"")
    yield _request(0, 6, [host, (6, b"1.5")], b"")
    action = json.dumps({"action": "pause", "target": "fuzz.targets.Ping"}).encode()
    origin = (1, b"http://127.0.0.1:8089")
    ctype = (3, b"application/json")
    token = (2, b"")  # the dashboard's own CSRF token
    yield _request(1, 7, [host, origin, ctype, token], action)
    yield _request(1, 7, [host, origin, ctype, token], b'{"action": "replay", "target": "1"}')
    yield _request(1, 7, [host, origin, ctype, token], b"[" * 16000)  # found by the fuzzer


def _raw_http() -> Iterator[bytes]:
    flags = bytes([0, 1, 1])
    yield flags + b"\x00GET /snapshot.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    yield flags + b"\x10POST /action HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n"
    yield flags + b"\x00GET /%2e%2e/app.js?x=1 HTTP/1.1\r\nHost: localhost:1\r\n\r\n"
    # found by the fuzzer: they stopped the whole server
    yield flags + b"\x00GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n"
    yield flags + b"\x00GET //[x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _asgi() -> Iterator[bytes]:
    yield bytes([0, 1, 1, 0, 1]) + b"/" + bytes([1, 4]) + b"host" + bytes([9]) + b"localhost"
    yield bytes([0, 1, 1, 1, 7]) + b"/action" + bytes([0])


def _catalog() -> Iterator[bytes]:
    yield bytes([2, 2]) + b"\x03id_" + bytes([0, 0, 0, 0, 1, 16]) + b"orders.placed"
    yield bytes([3]) * 64
    yield bytes(range(256))


def _committed() -> Iterator[bytes]:
    from .targets import CHECK_BUS

    for index, format in enumerate(FORMATS):
        yield bytes([index]) + render(CHECK_BUS, format).encode()  # up to date
    yield b"\x00" + b'{"asyncapi": "3.0.0", \xff\xfe}'  # found by the fuzzer: not UTF-8


SEEDS = {
    "envelope_json": lambda: _envelopes("json"),
    "envelope_msgpack": lambda: _envelopes("msgpack"),
    "codec_kinds": _kinds,
    "event_names": _names,
    "dashboard_request": _requests,
    "dashboard_http": _raw_http,
    "dashboard_asgi": _asgi,
    "catalog": _catalog,
    "catalog_check": _committed,
}


def main() -> None:
    """Write every target's seeds under corpus/<target>/, named by their hash."""
    for target, seeds in SEEDS.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds():
            (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


if __name__ == "__main__":
    main()
