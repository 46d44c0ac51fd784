"""``python -m bench.wire [--quick]``: the envelope's cost on top of raw msgspec and pydantic.

Encode + decode of a small and a ~2 KB event, through eventcore's codec and
through the raw library in the same run, interleaved; the ratio is eventcore's
throughput over the raw library's (1.0: no cost; target >= 0.8 against raw
msgspec). Writes ``bench/out/wire.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pydantic

from eventcore.wire import Codec, EventNames

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int
    price: float


@dataclasses.dataclass
class OrderDC:
    order_id: str
    total: float
    currency: str = "EUR"
    lines: list[Line] = dataclasses.field(default_factory=list)
    note: str = ""


class LineStruct(msgspec.Struct):
    sku: str
    quantity: int
    price: float


class OrderStruct(msgspec.Struct):
    order_id: str
    total: float
    currency: str = "EUR"
    lines: list[LineStruct] = []
    note: str = ""


class LineModel(pydantic.BaseModel):
    sku: str
    quantity: int
    price: float


class OrderModel(pydantic.BaseModel):
    order_id: str
    total: float
    currency: str = "EUR"
    lines: list[LineModel] = []
    note: str = ""


def _events(kind: str, big: bool) -> Any:
    n = 42 if big else 0
    note = "gift wrap, leave at the door" if big else ""
    if kind == "dataclass":
        return OrderDC(
            "A-1001", 99.5, lines=[Line(f"SKU-{i:05d}", i, 1.25 * i) for i in range(n)], note=note
        )
    if kind == "struct":
        lines = [LineStruct(f"SKU-{i:05d}", i, 1.25 * i) for i in range(n)]
        return OrderStruct("A-1001", 99.5, lines=lines, note=note)
    lines_m = [LineModel(sku=f"SKU-{i:05d}", quantity=i, price=1.25 * i) for i in range(n)]
    return OrderModel(order_id="A-1001", total=99.5, lines=lines_m, note=note)


def _raw(kind: str, event: Any, fmt: str) -> Callable[[], object]:
    if kind == "pydantic":
        model = type(event)
        if fmt == "json":
            return lambda: model.model_validate_json(event.model_dump_json())
        return lambda: model.model_validate(
            msgspec.msgpack.decode(msgspec.msgpack.encode(event.model_dump(mode="json")))
        )
    lib = msgspec.json if fmt == "json" else msgspec.msgpack
    enc, dec = lib.Encoder(), lib.Decoder(type(event))
    return lambda: dec.decode(enc.encode(event))


def _eventcore(event: Any, fmt: str) -> tuple[Callable[[], object], int]:
    names = EventNames()
    names.register(type(event), name=f"bench.{type(event).__name__.lower()}")
    codec = Codec(names, format=fmt)  # type: ignore[arg-type]
    return (lambda: codec.decode(codec.encode(event))), len(codec.encode(event))


def _best(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def run(
    quick: bool, *, number: int | None = None, rounds: int | None = None
) -> list[dict[str, Any]]:
    """Every case; each a dict of timings in microseconds and the ratio."""
    number = number or (2_000 if quick else 10_000)
    rounds = rounds or (3 if quick else 7)
    rows = []
    for kind in ("dataclass", "struct", "pydantic"):
        for fmt in ("json", "msgpack"):
            for big in (False, True):
                event = _events(kind, big)
                raw = _raw(kind, event, fmt)
                ours, size = _eventcore(event, fmt)
                raw_size = len(
                    event.model_dump_json().encode()
                    if kind == "pydantic" and fmt == "json"
                    else (msgspec.json if fmt == "json" else msgspec.msgpack).encode(
                        event.model_dump(mode="json") if kind == "pydantic" else event
                    )
                )
                best_raw = best_ours = float("inf")
                for _ in range(rounds):  # interleaved, so both see the same machine
                    best_raw = min(best_raw, _best(raw, number, 1))
                    best_ours = min(best_ours, _best(ours, number, 1))
                rows.append(
                    {
                        "kind": kind,
                        "format": fmt,
                        "size": "2 KB" if big else "small",
                        "payload_bytes": raw_size,
                        "message_bytes": size,
                        "raw_us": round(best_raw * 1e6, 3),
                        "eventcore_us": round(best_ours * 1e6, 3),
                        "ratio": round(best_raw / best_ours, 2),
                        "baseline": "pydantic" if kind == "pydantic" else "msgspec",
                    }
                )
                print(_line(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'kind':<10} {'fmt':<8} {'size':<6} {'payload B':>9} {'message B':>9} "
    f"{'raw us':>8} {'eventcore us':>12} {'ratio':>6}  vs"
)


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['kind']:<10} {r['format']:<8} {r['size']:<6} {r['payload_bytes']:>9} "
        f"{r['message_bytes']:>9} {r['raw_us']:>8.2f} {r['eventcore_us']:>12.2f} "
        f"{r['ratio']:>6.2f}  raw {r['baseline']}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the cases, print the table, write ``bench/out/wire.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args(argv)
    print("encode + decode, best of rounds; ratio = raw time / eventcore time")
    print(HEADER)
    rows = run(args.quick)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "wire.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
