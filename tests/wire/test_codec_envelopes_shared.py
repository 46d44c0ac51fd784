"""Found by the soak (``soak/``): every Codec built its own envelope classes, and typing's
and msgspec's caches of unions kept them all alive, so a dispatcher restarted again and
again with a broker transport (a new codec each time) grew on every restart. The
envelope classes are shared by the codecs now."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from eventcore.wire import Codec, EventNames
from eventcore.wire import Envelope as Envelope


@dataclass(frozen=True)
class Placed:
    n: int


@dataclass(frozen=True)
class Paid:
    n: int


def envelope_classes() -> list[type]:
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, type) and issubclass(o, Envelope) and o.__name__.endswith("-shared]")
    ]


def test_codecs_built_again_and_again_keep_one_envelope_class_per_type() -> None:
    names = EventNames()
    names.register(Placed, name="placed-shared")
    names.register(Paid, name="paid-shared")
    for _ in range(200):  # more than typing's (128) and msgspec's (64) caches hold
        codec = Codec(names)
        assert codec.decode(codec.encode(Placed(1))).event == Placed(1)
        assert codec.decode(codec.encode(Paid(2))).event == Paid(2)
    assert len(envelope_classes()) == 2
