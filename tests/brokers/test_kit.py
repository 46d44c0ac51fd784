"""The transports' shared kit on its own (no broker): the receipt ledger, the
settler, the keep-alive, the crew, argument checks and error mapping."""

from __future__ import annotations

import logging
from collections.abc import Hashable

import anyio
import pytest

from eventcore import EventcoreError, InvalidConfiguration, PublishUnconfirmed, QueueFull, Verdict
from eventcore.transports._kit import (
    BrokerUnavailable,
    Crew,
    KeepAlive,
    Ledger,
    RetryIds,
    Settlement,
    Settler,
    refused_send,
    unavailable,
    unconfirmed,
    validate,
)

settler_logger = logging.getLogger("tests.kit")

pytestmark = pytest.mark.anyio


def test_a_ledger_takes_one_verdict_per_message_and_holds_it_until_done() -> None:
    ledger: Ledger[str] = Ledger()
    ledger.hold("a", "receipt a")
    ledger.hold("b", "receipt b")
    assert ledger.settle("a", Verdict.HANDLED)
    assert not ledger.settle("a", Verdict.REJECTED)  # a second verdict is ignored
    assert not ledger.settle("unknown", Verdict.HANDLED)
    assert ledger.wanted.is_set()
    [taken] = ledger.take()
    assert (taken.key, taken.receipt, taken.verdict) == ("a", "receipt a", Verdict.HANDLED)
    assert not ledger.wanted.is_set()
    assert ledger.holds("a")  # still held (kept alive) until the broker has it
    assert [key for key, _ in ledger.unsettled()] == ["b"]
    ledger.put_back([taken])
    assert ledger.queued == 1
    ledger.done("a")
    ledger.put_back(ledger.take())  # done meanwhile: not queued again
    assert ledger.queued == 0
    assert ledger.held() == ["b"]


def test_the_ledger_hands_stale_messages_to_the_keep_alive_once_per_period() -> None:
    ledger: Ledger[str] = Ledger()
    ledger.hold("a", "ra")
    assert [key for key, _ in ledger.stale(0.0)] == ["a"]
    assert ledger.stale(60.0) == []


async def test_a_settler_retries_a_failed_batch_and_drains_at_close() -> None:
    ledger: Ledger[str] = Ledger()
    sent: list[str] = []
    failures = [True]

    async def apply(batch: list[Settlement[str]]) -> None:
        if failures.pop(0) if failures else False:
            raise ConnectionError("lost")
        for settlement in batch:
            sent.append(settlement.receipt)
            ledger.done(settlement.key)

    settler = Settler(ledger, apply, logger=settler_logger)
    for key in "abc":
        ledger.hold(key, f"r{key}")
        ledger.settle(key, Verdict.HANDLED)
    with anyio.fail_after(5):
        assert await settler.drain(5.0) == 0
    assert sent == ["ra", "rb", "rc"]
    assert len(ledger) == 0


async def test_a_keep_alive_refreshes_what_is_held() -> None:
    ledger: Ledger[str] = Ledger()
    ledger.hold("a", "ra")
    refreshed: list[Hashable] = []

    async def refresh(stale: list[tuple[Hashable, str]]) -> None:
        refreshed.extend(key for key, _ in stale)

    keep_alive = KeepAlive(ledger, refresh, every=0.0, logger=settler_logger)
    await keep_alive.once()
    assert refreshed == ["a"]


async def test_a_crew_runs_its_jobs_until_stopped() -> None:
    started, stopped = anyio.Event(), anyio.Event()

    async def job() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async def failing() -> None:
        raise RuntimeError("a job that fails is logged; the others go on")

    crew = Crew("test", settler_logger)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await crew.start({"job": job, "failing": failing}, task_group=group)
            await started.wait()
            assert crew.running
            await crew.stop()
            assert stopped.is_set()
            assert not crew.running


async def test_a_crew_needs_a_task_group() -> None:
    with pytest.raises(InvalidConfiguration, match="test was opened without a task group"):
        await Crew("test", settler_logger).start({}, task_group=None)


def test_arguments_are_checked_with_what_was_wrong() -> None:
    assert validate.seconds("ack_wait", 3) == 3.0
    assert validate.count("max_len", None, optional=True) is None
    assert validate.groups(None, "own") == ("own",)
    assert validate.groups(["a", "b", "a"], "own") == ("a", "b")
    for call, message in (
        (lambda: validate.token("group", "a.b"), "group must be letters"),
        (lambda: validate.count("partitions", 0), "partitions must be an int >= 1"),
        (lambda: validate.count("partitions", True), "partitions must be an int >= 1"),
        (lambda: validate.seconds("ack_wait", -1), "ack_wait must be a number of seconds"),
        (lambda: validate.choice("format", "xml", ("json",)), "format must be 'json'"),
        (lambda: validate.groups("billing", "own"), "not one string"),
        (lambda: validate.url("url", "http://x", ("nats",)), "url must start with nats://"),
        (lambda: validate.word("prefix", "a b"), "prefix must be a non-empty word"),
    ):
        with pytest.raises(InvalidConfiguration, match=message):
            call()


def test_broker_errors_are_eventcore_errors_with_the_reason_and_no_credentials() -> None:
    error = unavailable("NATS", "nats://***@h:4222", TimeoutError(), "connecting")
    assert isinstance(error, BrokerUnavailable)
    assert isinstance(error, EventcoreError)
    assert isinstance(error, ConnectionError)
    assert "TimeoutError" in str(error)  # never an empty reason
    told = unavailable("Redis", "redis://h", OSError("redis://u:secret@h refused"), "x")
    assert "secret" not in str(told)
    full = refused_send(int, "the stream is full")
    assert isinstance(full, QueueFull)
    assert full.event_type is int
    maybe = unconfirmed(int, "id-1", "Redis", deduplicated=False)
    assert isinstance(maybe, PublishUnconfirmed)
    assert "may store it twice" in str(maybe)


def test_a_failed_publish_keeps_its_id_for_a_retry_of_the_same_object() -> None:
    retries = RetryIds(window=60.0)
    event = object()
    first = retries.attempt(event)
    retries.failed(first)
    again = retries.attempt(event)
    assert again is first
    assert retries.attempt(event).id != first.id  # retried once: a new publish is new
    assert retries.attempt(object()).id != first.id
