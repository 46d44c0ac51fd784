"""The soak's growth detector (soak/verdict.py) on series of known shape: noise, spikes,
warm-up steps and sawtooths are flat; a steady leak, even a slow one, grows."""

from __future__ import annotations

import math
import random

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
