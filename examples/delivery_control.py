"""Timeouts, retries, dead letters and per-key order on one small payment service.

Run it with ``python examples/delivery_control.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from eventcore import DeadLetter, Dispatcher, Retry


@dataclass(frozen=True)
class Charge:
    account: str
    cents: int


bus = Dispatcher(
    concurrency=4,
    on_error=lambda event, handler, exc: print(f"failed: {handler.__name__}: {exc}"),
)
# One account's charges are applied one at a time, in order; accounts run in parallel.
bus.configure(Charge, key=lambda c: c.account, handler_timeout=0.5)
balances: dict[str, list[int]] = {}
gateway_calls = 0


@bus.on(Charge)
async def apply(charge: Charge) -> None:
    balances.setdefault(charge.account, []).append(charge.cents)
    await anyio.sleep(0.001)


@bus.on(Charge, retry=Retry(attempts=3, backoff=0.01, on=(ConnectionError,)))
async def notify_gateway(charge: Charge) -> None:
    global gateway_calls
    gateway_calls += 1
    if gateway_calls % 3 == 1:  # the gateway drops every third call
        raise ConnectionError("gateway reset the connection")


@bus.on(Charge, timeout=0.05)
async def fraud_check(charge: Charge) -> None:
    if charge.cents > 90_000:
        await anyio.sleep(10)  # hangs: cancelled after 0.05 s, reported as HandlerTimeout


@bus.on(DeadLetter)
async def park(letter: DeadLetter) -> None:
    print(f"dead letter: {letter.event} ({letter.reason.value}: {letter.exception!r})")


async def main() -> None:
    async with bus:
        for n in range(12):
            await bus.publish(Charge("abc"[n % 3], 1000 * n))
        await bus.publish(Charge("a", 99_000))
    print("order per account:", balances)
    print("gateway calls (with retries):", gateway_calls)
    print(bus.stats(Charge))


if __name__ == "__main__":
    anyio.run(main)
