"""``bench/wire.py`` runs, and the codec's messages are what it measures."""

from __future__ import annotations

from bench.wire import run


def test_the_wire_benchmark_runs_every_case() -> None:
    # best of 3 rounds: one round preempted on a busy machine rounded a ratio to 0.00
    rows = run(True, number=5, rounds=3)
    assert len(rows) == 12  # 3 kinds x 2 formats x 2 sizes
    for row in rows:
        assert row["message_bytes"] > row["payload_bytes"]  # the envelope is on top
        assert row["ratio"] > 0
    big = [r for r in rows if r["size"] == "2 KB" and r["format"] == "json"]
    assert all(r["payload_bytes"] > 1800 for r in big)
