"""The demo (``make demo``) shows every policy at work and loses nothing."""

from __future__ import annotations

import pytest

from eventcore import Overflow
from eventcore.__main__ import main
from eventcore._demo import POLICIES, OrderPlaced, PaymentRequested, ReceiptSent, run_demo


@pytest.mark.anyio
async def test_demo_shows_each_policy_and_loses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = await run_demo(1.0, live=False)
    out = capsys.readouterr().out
    assert "What happened" in out
    assert "abandoned = 0" in out
    shown = {Overflow.DROP_NEWEST: "dropped", Overflow.DROP_OLDEST: "evicted"}
    for event_type, (overflow, queue_size, _, _) in POLICIES.items():
        stats = report.final[event_type]
        assert report.peak_queued[event_type] <= queue_size
        assert stats.abandoned == stats.queued == stats.in_flight == 0
        assert stats.accepted == stats.handled + stats.evicted
        if event_type is not ReceiptSent:  # published by a handler, not a feed
            assert stats.published == report.published[event_type]
        if overflow in shown:
            assert getattr(stats, shown[overflow]) > 0, overflow
    assert report.final[PaymentRequested].refused == report.backoffs > 0
    assert report.peak_queued[OrderPlaced] == POLICIES[OrderPlaced][1]  # BLOCK pushed back


def test_cli_runs_the_demo_in_plain_mode(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--seconds", "0.5", "--plain"])
    assert "summary" not in capsys.readouterr().err


def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--seconds", "-1"])
    assert "--seconds must be" in capsys.readouterr().err
