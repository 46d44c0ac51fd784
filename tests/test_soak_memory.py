"""What the soak's memory figure rests on (soak/service.py, soak/trim.py): a closed
dispatcher is garbage, so the collection the soak runs after each life frees it,
and what stays resident after ``malloc_trim`` is what the process still uses."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from soak.events import Order, Payment, Reading
from soak.ledger import Ledger
from soak.service import _publish, build, options


@pytest.mark.anyio
async def test_a_closed_soak_dispatcher_is_freed_by_one_collection(tmp_path: Path) -> None:
    args = options(["--backend", "memory", "--out", str(tmp_path)])
    ledger = Ledger()
    bus = build(args, ledger, hang=False)
    async with bus:
        for n in range(1, 200):  # handled, failed (every 40th Payment), timed out (Reading)
            for event in (Order(n), Payment(n), Reading(n)):
                await _publish(bus, ledger, event)  # as the soak's feed: QueueFull backs off
        await bus.drain()
    assert not ledger.lost()
    dead = weakref.ref(bus)
    del bus
    gc.collect()
    assert dead() is None, [type(r).__name__ for r in gc.get_referrers(dead())]
