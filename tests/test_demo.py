"""The demo (``make demo``) shows every policy at work and loses nothing."""

from __future__ import annotations

import io
import logging
import re

import anyio
import httpx
import pytest

from eventcore import Overflow
from eventcore.__main__ import main
from eventcore._demo import (
    COLUMNS,
    POLICIES,
    OrderPlaced,
    PaymentRequested,
    ReceiptSent,
    _table,
    run_demo,
)


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


def test_the_live_table_is_legible_at_80_columns() -> None:
    """Every heading and every value shows whole in an 80-column terminal, with counters
    as long as a 10-minute run makes them."""
    from rich.console import Console

    data: list[tuple[str, ...]] = [
        (event_type.__name__, overflow.name, f"{size}/{size}", str(size), f"{limit}/{limit}",
         "9999999", "999999", "99999")
        for event_type, (overflow, size, limit, _) in POLICIES.items()
    ]  # fmt: skip
    screen = io.StringIO()
    Console(width=80, file=screen, color_system=None).print(_table("live  t=600.0s", data))
    text = screen.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    assert any(all(column in line for column in COLUMNS) for line in lines), text
    for row in data:
        assert any(all(cell in line for cell in row) for line in lines), (row, text)


@pytest.mark.anyio
async def test_in_a_terminal_the_dashboard_stays_up_after_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    statuses: list[int] = []
    async with anyio.create_task_group() as tg:

        async def demo() -> None:
            await run_demo(0.5, live=False, dashboard_port=0, hold=True)

        tg.start_soon(demo)
        out = ""
        while "press Ctrl-C" not in out:
            await anyio.sleep(0.05)
            out += capsys.readouterr().out
        assert "What happened" in out  # the summary came first
        match = re.search(r"stays up at (http://127\.0\.0\.1:\d+/)", out)
        assert match is not None, out
        await anyio.sleep(0.3)  # held, not ending
        async with httpx.AsyncClient() as http:
            statuses.append((await http.get(match.group(1) + "snapshot.json")).status_code)
        tg.cancel_scope.cancel()  # what Ctrl-C does
    assert statuses == [200]


def test_piped_the_demo_ends_by_itself(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--seconds", "0.3", "--plain"])  # stdout is captured: not a terminal
    out = capsys.readouterr().out
    assert "dashboard: http://127.0.0.1:" in out
    assert "press Ctrl-C" not in out


def test_the_demo_leaves_the_dashboard_logger_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Regression: serving its dashboard, the demo set the ``eventcore.dashboard`` logger
    to ERROR for good, silencing the warnings of later dashboards in the process."""
    logger = logging.getLogger("eventcore.dashboard")
    before = logger.level
    main(["demo", "--seconds", "0.3", "--plain"])
    assert logger.level == before
