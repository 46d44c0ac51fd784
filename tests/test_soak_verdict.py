"""The soak's growth detector (soak/verdict.py) on series of known shape: noise, spikes,
warm-up steps and sawtooths are flat; a steady leak, even a slow one, grows."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from soak import trim
from soak.__main__ import Backend, judge_backend
from soak.verdict import judge, theil_sen

SECONDS = [float(t) for t in range(1800)]  # half an hour, one sample a second


def noisy(level: float, spread: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.uniform(-spread, spread) for _ in SECONDS]


def test_theil_sen_finds_the_slope_of_a_line_despite_outliers() -> None:
    values = [2.0 * t + 5 for t in SECONDS[:200]]
    values[50] = values[120] = 1e6
    assert math.isclose(theil_sen(SECONDS[:200], values), 2.0)


def test_noise_is_flat() -> None:
    assert not judge("rss_mib", SECONDS, noisy(40.0, 3.0)).grows


def test_single_spikes_are_flat() -> None:
    values = noisy(40.0, 0.5)
    for t in (300, 1200, 1700, 1790):
        values[t] = 400.0
    assert not judge("rss_mib", SECONDS, values).grows


def test_a_warm_up_step_in_the_first_minutes_is_flat() -> None:
    values = [30.0 if t < 90 else 42.0 for t in SECONDS]
    assert not judge("rss_mib", SECONDS, values).grows


def test_a_sawtooth_of_restarts_is_flat() -> None:
    values = [20.0 + (t % 40) / 4 for t in SECONDS]  # tasks piling up, then a restart
    assert not judge("tasks", SECONDS, values).grows


def test_a_steady_leak_grows() -> None:
    values = [40.0 + 0.02 * t + v for t, v in zip(SECONDS, noisy(0.0, 2.0), strict=True)]
    verdict = judge("rss_mib", SECONDS, values)  # 1.2 MiB a minute: 36 MiB in half an hour
    assert verdict.grows, verdict.line()


def test_a_slow_fd_leak_grows() -> None:
    values = [9.0 + t // 120 for t in SECONDS]  # one descriptor every two minutes
    assert judge("fds", SECONDS, values).grows


def test_the_leak_the_soak_found_grows() -> None:
    # a few KiB kept per dispatcher restart: 0.15 MiB a minute, under a shared machine's noise
    values = [42.5 + 0.0025 * t + v for t, v in zip(SECONDS, noisy(0.0, 0.3), strict=True)]
    assert judge("rss_mib", SECONDS, values).grows


def test_a_fast_leak_grows_within_two_minutes() -> None:
    seconds = [float(t) for t in range(90)]  # the CI soak's 90 s of traffic
    values = [26.0 + 8.0 * t / 60 for t in seconds]
    assert judge("rss_mib", seconds, values).grows


def _run(tmp_path: Path, rss: list[float], trimmed: list[float] | None) -> dict[str, Any]:
    """judge_backend on a finished NATS run whose samples hold *rss* (and, every tenth
    sample, *trimmed*: the RSS after malloc_trim)."""
    folder = tmp_path / "nats"
    folder.mkdir()
    rows = []
    for t, value in enumerate(rss):
        row: dict[str, Any] = {"t": float(t), "rss_mib": value, "fds": 9, "tasks": 30,
                               "threads": 1, "backlog": 0, "broken": []}  # fmt: skip
        if trimmed is not None and t % 10 == 0:
            row["rss_trimmed_mib"] = trimmed[t]
        rows.append(json.dumps(row))
    (folder / "samples.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "ledger.json").write_text(json.dumps({"lost": 0}))
    return judge_backend(Backend("nats", folder), feed=len(rss))


def test_memory_is_judged_after_malloc_trim_when_the_service_trimmed(tmp_path: Path) -> None:
    # glibc keeping freed pages: the untrimmed RSS climbs (here 5 MiB in half an
    # hour), the RSS after malloc_trim does not
    rss = [42.4 + 0.003 * t for t in SECONDS]
    result = _run(tmp_path, rss, trimmed=noisy(41.0, 0.2))
    assert result["failures"] == [], result["failures"]
    figures = [g["figure"] for g in result["growth"]]
    assert figures[:2] == ["rss_mib", "rss_trimmed_mib"]
    assert result["growth"][0]["grows"]  # reported, not judged
    assert "not judged" in result["growth_lines"][0]


def test_a_leak_grows_after_malloc_trim_too(tmp_path: Path) -> None:
    leak = [41.0 + 0.0025 * t for t in SECONDS]  # in use: trimming gives nothing back
    result = _run(tmp_path, [v + 1.0 for v in leak], trimmed=leak)
    assert [f for f in result["failures"] if f.startswith("rss_trimmed_mib grows")]


def test_without_trimmed_samples_the_untrimmed_rss_is_judged(tmp_path: Path) -> None:
    rss = [42.4 + 0.0025 * t for t in SECONDS]  # not glibc, or --trim-every 0
    result = _run(tmp_path, rss, trimmed=None)
    assert [f for f in result["failures"] if f.startswith("rss_mib grows")]
    assert "rss_trimmed_mib" not in [g["figure"] for g in result["growth"]]


def test_trim_gives_the_free_heap_back_on_glibc() -> None:
    if not trim.available():
        pytest.skip("no malloc_trim here (not glibc)")
    assert trim.trim()
