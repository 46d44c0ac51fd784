"""``bench/perf_guard.py``: its workloads run and count right, its arithmetic and its
verdicts (valgrind itself runs in ``make perf-guard``, not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import perf_guard
from bench.perf_guard import WORKLOADS, compare, parse_dumps, per_event, table


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w.name for w in WORKLOADS])
def test_each_workload_runs_and_every_handler_call_happens(
    workload: perf_guard.Workload,
) -> None:
    perf_guard._run_workload(workload)  # raises SystemExit when calls are missing


def test_every_budgeted_workload_has_a_budget_for_the_committed_interpreters() -> None:
    data = json.loads(perf_guard.BUDGETS.read_text())
    assert data["tolerance"] == 0.05
    names = {w.name for w in WORKLOADS if not w.reference}
    assert data["budgets"], "no budgets committed"
    for budgets in data["budgets"].values():
        assert set(budgets) == names


def _dump(tmp_path: Path, name: str, count: int) -> Path:
    path = tmp_path / name
    path.write_text(f"version: 1\ncreator: callgrind\nevents: Ir\nsummary: {count}\n")
    return path


def test_dumps_are_read_in_dump_order_with_the_final_one_last(tmp_path: Path) -> None:
    paths = [_dump(tmp_path, "callgrind.out", 99)]
    paths += [_dump(tmp_path, f"callgrind.out.{i}", i * 10) for i in range(1, 12)]
    assert parse_dumps(paths) == [*(i * 10 for i in range(1, 12)), 99]


def test_per_event_is_the_difference_of_the_2n_and_the_n_phase() -> None:
    # start-up | warm-up | between | N phase | between | 2N phase | end
    counts = [10_000_000, 500_000, 300, 1_000_000 + 7_000, 300, 2_000_000 + 7_000, 5_000]
    assert per_event(counts, 1000) == 1000.0  # the phase's fixed 7,000 cancels
    with pytest.raises(ValueError, match="expected 7 callgrind dumps"):
        per_event(counts[:5], 1000)


def test_over_budget_only_beyond_the_tolerance() -> None:
    budgets = {"1type": 1000.0, "fanout10": 1000.0, "types1000": 1000.0}
    measured = {"1type": 1050.0, "fanout10": 1051.0, "types1000": 900.0, "bare-1type": 5.0}
    verdicts = {v.name: v for v in compare(measured, budgets, 0.05)}
    assert not verdicts["1type"].over
    assert verdicts["fanout10"].over
    assert not verdicts["types1000"].over
    assert verdicts["types1000"].headroom == pytest.approx(0.1)
    assert verdicts["bare-1type"].budget is None  # a reference: no budget
    text = table(list(verdicts.values()))
    assert "OVER BUDGET" in text
    assert "10.0% under" in text
    assert "reference" in text


def test_skips_with_a_message_without_valgrind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert perf_guard.main([]) == 0
    assert "perf-guard SKIPPED: valgrind is not installed" in capsys.readouterr().out


def test_skips_with_a_message_without_budgets_for_this_interpreter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "valgrind")
    monkeypatch.setattr(perf_guard, "python_key", lambda: "CPython 9.99")
    assert perf_guard.main([]) == 0
    assert "no budgets for CPython 9.99" in capsys.readouterr().out
