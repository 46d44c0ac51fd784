"""The soak's ledger (soak/ledger.py) counts: a number accepted twice needs two outcomes,
whichever comes first, and two outcomes that came first settle two acceptances."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from soak.events import Order, Receipt
from soak.ledger import Ledger


def test_one_event_is_settled_by_its_outcome_before_or_after_it() -> None:
    ledger = Ledger()
    ledger.accept(Order(1))
    ledger.see(Order(1))
    ledger.see(Order(2))  # handled before publish returned
    ledger.accept(Order(2))
    assert ledger.lost() == []


def test_two_receipts_of_one_number_handled_before_their_journal_was_read(
    tmp_path: Path,
) -> None:
    # the 30-minute Redis soak's "lost" soak.receipt 262461: an Order stored twice (its
    # publish retried across a Redis restart) made a worker publish Receipt(262461)
    # twice; the service handled both copies (its own outcomes, at once) before it read
    # the worker's journal, which said "accepted" twice: one outcome was kept, so the
    # second acceptance stayed pending
    ledger = Ledger()
    ledger.see(Receipt(262461))
    ledger.see(Receipt(262461))
    journal = tmp_path / "worker-48.log"
    with journal.open("w") as out:
        worker = Ledger(out)
        worker.see(Order(262461))
        worker.see(Order(262461))
        worker.accept(Receipt(262461))
        worker.accept(Receipt(262461))
    ledger.follow(journal)
    assert ledger.lost() == []
    assert ledger.accepted == 2
    assert list(ledger.early) == [("soak.order", 262461)]  # accepted by the service


@pytest.mark.parametrize("first", [True, False])
def test_a_copy_of_a_number_accepted_twice_that_nobody_handled_is_lost(first: bool) -> None:
    ledger = Ledger()
    if first:
        ledger.see(Receipt(7))
    ledger.accept(Receipt(7))
    ledger.accept(Receipt(7))
    if not first:
        ledger.see(Receipt(7))
    assert ledger.lost() == [("soak.receipt", 7)]


def test_a_redelivered_event_is_not_counted_twice_and_its_extra_outcome_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = 1000.0
    monkeypatch.setattr("soak.ledger.time", SimpleNamespace(monotonic=lambda: now))
    ledger = Ledger()
    ledger.accept(Order(3))
    ledger.see(Order(3))
    ledger.see(Order(3))  # a redelivery: waits for an acceptance that never comes
    assert ledger.lost() == []
    assert len(ledger.early) == 1
    now += Ledger.EARLY / 2
    ledger.see(Order(4))
    ledger.see(Order(4))
    now += Ledger.EARLY / 2 + 1
    ledger.expire()  # the outcome of 3 expired, both of 4 wait on
    assert ledger.early == {("soak.order", 4): [1030.0, 1030.0]}
    ledger.accept(Order(4))
    ledger.accept(Order(4))
    assert ledger.lost() == []
    assert ledger.early == {}
