"""Each overflow policy under the same overload: a burst of 20 events into a queue of 5.

Run it with ``python examples/overflow_policies.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import Dispatcher, DropReason, Overflow, PublishTimeout, QueueFull


@dataclass(frozen=True)
class Tick:
    n: int


async def burst(overflow: Overflow) -> None:
    handled: list[int] = []
    lost: list[tuple[int, str]] = []
    bus = Dispatcher(on_drop=lambda e, r: lost.append((e.n, r.value)))
    bus.configure(Tick, queue_size=5, overflow=overflow)

    @bus.on(Tick)
    async def slow(event: Tick) -> None:
        await anyio.sleep(0.01)
        handled.append(event.n)

    results: list[str] = []
    async with bus:
        for n in range(20):
            try:
                accepted = await bus.publish(Tick(n), timeout=0.05)
                results.append("ok" if accepted else "refused")
            except QueueFull:
                results.append("QueueFull")
            except PublishTimeout:
                results.append("timeout")
    print(f"\n{overflow.name}")
    print("  publish results:", " ".join(results))
    print("  handled:        ", handled)
    print("  on_drop:        ", lost)
    s = bus.stats(Tick)
    print(f"  stats: accepted={s.accepted} dropped={s.dropped} evicted={s.evicted} "
          f"refused={s.refused} handled={s.handled}")  # fmt: skip
    assert s.accepted == s.handled + s.evicted
    assert all(reason in {r.value for r in DropReason} for _, reason in lost)


async def main() -> None:
    for overflow in Overflow:
        await burst(overflow)


if __name__ == "__main__":
    anyio.run(main)
