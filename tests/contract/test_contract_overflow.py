"""Promises 2, 3 and 5 for each overflow policy, against an exact model.

A burst published without yielding fills the queue before any worker runs, so
which events are accepted, refused, evicted and finally handled, and in which
order, follows from the policy alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import Dispatcher, DropReason, Overflow, QueueFull

from .contract_support import BACKENDS, Event, make_hierarchy, run_on

pytestmark = pytest.mark.contract

(Burst,) = make_hierarchy([None])


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(
    overflow=st.sampled_from(Overflow),
    queue_size=st.integers(1, 5),
    concurrency=st.integers(1, 3),
    burst=st.integers(0, 12),
    nowait=st.booleans(),
)
def test_a_burst_into_a_full_queue_follows_the_policy(
    backend: str,
    options: dict[str, Any],
    overflow: Overflow,
    queue_size: int,
    concurrency: int,
    burst: int,
    nowait: bool,
) -> None:
    handled: list[int] = []
    drops: list[tuple[int, DropReason]] = []
    results: list[object] = []
    peaks: list[int] = []
    bus = Dispatcher(
        queue_size=queue_size,
        concurrency=concurrency,
        overflow=overflow,
        on_drop=lambda event, reason: drops.append((event.uid, reason)),
    )

    @bus.on(Burst)
    async def handler(event: Event) -> None:
        peaks.append(bus.stats(Burst).queued)
        handled.append(event.uid)

    async def main() -> None:
        async with bus:
            for uid in range(burst):
                event = Burst(uid, "p", uid)
                try:
                    if nowait or overflow is Overflow.BLOCK:  # a BLOCK publish would wait
                        results.append(bus.publish_nowait(event))
                    else:
                        results.append(await bus.publish(event))  # never yields here
                except QueueFull:
                    results.append("full")
                peaks.append(bus.stats(Burst).queued)
            await bus.drain()

    run_on(backend, options, main)
    kept = min(burst, queue_size)
    over = burst - kept
    if overflow is Overflow.DROP_OLDEST:
        want_results: list[object] = [True] * burst
        survivors = list(range(over, burst))
        want_drops = [(uid, DropReason.EVICTED) for uid in range(over)]
    else:
        refusal = {Overflow.DROP_NEWEST: False}.get(overflow, "full")
        want_results = [True] * kept + [refusal] * over
        survivors = list(range(kept))
        reason = DropReason.DROPPED_NEWEST
        want_drops = [(uid, reason) for uid in range(kept, burst) if refusal is False]
    assert results == want_results
    assert drops == want_drops
    if concurrency == 1:
        assert handled == survivors  # FIFO
    else:
        assert sorted(handled) == survivors
    assert max(peaks, default=0) <= queue_size
    stats = bus.stats(Burst)
    evicted = over if overflow is Overflow.DROP_OLDEST else 0
    dropped = over if overflow is Overflow.DROP_NEWEST else 0
    refused = over if overflow in (Overflow.RAISE, Overflow.BLOCK) else 0
    assert (stats.accepted, stats.dropped, stats.refused, stats.evicted, stats.handled) == (
        burst - dropped - refused,
        dropped,
        refused,
        evicted,
        len(survivors),
    )
    assert stats.published == burst
