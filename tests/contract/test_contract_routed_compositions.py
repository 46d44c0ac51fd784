"""Routed types where features meet: keys, pause, reconfiguration, re-entrant
publishes, failing handlers and shutdown, through the broker seam (an in-memory
fake broker, so it runs on asyncio, uvloop and trio).

Each example is a random program of steps on two routed types (one keyed) and one
in-memory type, ending with a drained or a forced shutdown. Whatever the mix:

- every fetched event is settled exactly once; never more is fetched than room;
- a HANDLED or FAILED verdict means its handler ran to the end, once for that
  fetch; a SHUTDOWN verdict means it did not finish (another process gets it);
- nothing is lost: every event sent is settled or still on the broker;
- no handler of a paused type starts; events of one key start in publish order;
- a drained run handles every event it fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventcore import Dispatcher, Retry, Verdict
from tests.fake_broker import FakeBroker

from .contract_support import BACKENDS, run_on

pytestmark = pytest.mark.contract


@dataclass(frozen=True)
class Keyed:
    uid: int
    key: str
    fail: bool = False


@dataclass(frozen=True)
class Plain:
    uid: int
    follow: bool = False


@dataclass(frozen=True)
class Local:
    uid: int


STEPS = st.one_of(
    st.tuples(st.just("keyed"), st.sampled_from("abc"), st.booleans()),
    st.tuples(st.just("plain"), st.booleans()),
    st.tuples(st.just("local")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("configure"), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("yield")),
)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@given(
    steps=st.lists(STEPS, min_size=1, max_size=30),
    queue_size=st.integers(1, 4),
    concurrency=st.integers(1, 3),
    forced=st.booleans(),
)
def test_routed_types_keep_their_promises_where_features_meet(
    backend: str,
    options: dict[str, Any],
    steps: list[tuple[Any, ...]],
    queue_size: int,
    concurrency: int,
    forced: bool,
) -> None:
    broker = FakeBroker()
    bus = Dispatcher(
        queue_size=queue_size,
        concurrency=concurrency,
        shutdown_timeout=0 if forced else 10,
        on_error=lambda *args: None,
    )
    bus.configure(Keyed, transport=broker, key=lambda e: e.key, retry=Retry(attempts=1))
    bus.configure(Plain, transport=broker)
    started: list[Any] = []
    finished: list[Any] = []
    problems: list[str] = []
    sent: list[Any] = []

    async def keyed(event: Keyed) -> None:
        if bus.paused(Keyed) and bus.running:  # shutdown drains paused types (promise 14)
            problems.append(f"{event} started while its type was paused")
        started.append(event)
        await anyio.lowlevel.checkpoint()
        if event.fail:
            finished.append(event)
            raise ValueError(event.uid)
        finished.append(event)

    async def plain(event: Plain) -> None:
        started.append(event)
        if event.follow:  # a re-entrant publish into another routed type
            follow_on = Keyed(10_000 + event.uid, "z")
            if await bus.publish(follow_on, timeout=5):
                sent.append(follow_on)
        await anyio.lowlevel.checkpoint()
        finished.append(event)

    async def local(event: Local) -> None:
        finished.append(event)

    bus.subscribe(Keyed, keyed)
    bus.subscribe(Plain, plain)
    bus.subscribe(Local, local)

    async def program() -> None:
        async with bus:
            for uid, step in enumerate(steps):
                kind = step[0]
                if kind == "keyed":
                    event: Any = Keyed(uid, step[1], fail=step[2])
                elif kind == "plain":
                    event = Plain(uid, follow=step[1])
                elif kind == "local":
                    await bus.publish(Local(uid))
                    continue
                elif kind == "pause":
                    bus.pause(Keyed)
                    continue
                elif kind == "resume":
                    bus.resume(Keyed)
                    continue
                elif kind == "configure":
                    bus.configure(Keyed, queue_size=step[1], concurrency=step[2])
                    continue
                else:
                    await anyio.lowlevel.checkpoint()
                    continue
                assert await bus.publish(event)
                sent.append(event)
            if not forced:  # drained: every event on the broker fetched and settled
                bus.resume(Keyed)
                while len(broker.receipts) < len(sent) or broker.in_flight:
                    await broker.until(len(sent))
                await bus.drain()

    run_on(backend, options, program)

    assert problems == []
    fetched = [receipt.event for receipt in broker.receipts]
    # settled exactly once, each; nothing lost: fetched or still on the broker
    assert [len(receipt.verdicts) for receipt in broker.receipts] == [1] * len(fetched)
    assert sorted(map(repr, fetched + broker.pending)) == sorted(map(repr, sent))
    for receipt in broker.receipts:
        (verdict,) = receipt.verdicts
        done = receipt.event in finished
        if verdict in (Verdict.HANDLED, Verdict.FAILED):
            assert done, f"{receipt.event} settled {verdict.value} but its handler did not end"
            assert (verdict is Verdict.FAILED) == getattr(receipt.event, "fail", False)
        else:
            assert verdict is Verdict.SHUTDOWN, receipt
    # never more fetched than room (the fake asserts room > 0 on every fetch)
    assert all(room >= 1 for room in broker.rooms)
    # one key's events start in the order the broker accepted them
    for key in "abcz":
        accepted = [e for e in broker.sent if isinstance(e, Keyed) and e.key == key]
        began = [e for e in started if isinstance(e, Keyed) and e.key == key]
        assert began == accepted[: len(began)], (key, began, accepted)
    # each fetched event's handler ran at most once
    assert len(started) == len(set(started))
    if not forced:
        assert broker.pending == []
        assert {r.verdicts[0] for r in broker.receipts} <= {Verdict.HANDLED, Verdict.FAILED}
        assert sorted(map(repr, finished)) == sorted(
            map(repr, [*fetched, *(Local(uid) for uid, s in enumerate(steps) if s[0] == "local")])
        )
