"""What fails a soak: a figure that grows without bound, a lost event, a broken identity.

Growth is judged on a shared, noisy machine, so never on one sample: the slope
over the last half of the run is a Theil-Sen estimate (the median of the slopes
between pairs of samples, which a few spikes cannot move), and a figure grows
only when both that slope, carried over the last half, and the level at the
end (a median) exceed the first minute's range by the figure's tolerance (the
first third, for a run shorter than three minutes). The tolerances catch a growth
of 0.15 MiB a minute in half an hour.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """How much a figure may move: the larger of *absolute* and *relative* x its start."""

    absolute: float
    relative: float

    def of(self, start: float) -> float:
        """The allowance for a figure that started at *start*."""
        return max(self.absolute, self.relative * abs(start))


#: the process's resident memory, and the same once glibc gave back its free pages
#: (``malloc_trim``, see ``soak.trim``): the memory verdict is on the second when a
#: run has it
MEMORY, TRIMMED = "rss_mib", "rss_trimmed_mib"

#: the figures watched, with what each may drift (RSS in MiB)
TOLERANCES: dict[str, Tolerance] = {
    MEMORY: Tolerance(absolute=2.0, relative=0.05),
    TRIMMED: Tolerance(absolute=2.0, relative=0.05),
    "fds": Tolerance(absolute=6.0, relative=0.10),
    "tasks": Tolerance(absolute=12.0, relative=0.15),
    "threads": Tolerance(absolute=2.0, relative=0.0),
    "backlog": Tolerance(absolute=64.0, relative=0.25),
}


@dataclass(frozen=True)
class Growth:
    """The judgement of one figure."""

    figure: str
    first_minute: float
    first_minute_high: float
    end: float
    slope_per_minute: float
    allowed: float
    grows: bool

    def line(self) -> str:
        """One line of the report."""
        state = "GROWS" if self.grows else "flat"
        return (
            f"{self.figure:15} first minute {self.first_minute:9.1f}"
            f" (high {self.first_minute_high:9.1f})  end {self.end:9.1f}"
            f"  slope {self.slope_per_minute:+8.2f}/min"
            f"  allowed {self.allowed:7.1f}  {state}"
        )


def theil_sen(times: Sequence[float], values: Sequence[float], pairs: int = 4000) -> float:
    """The median slope between pairs of points (an evenly spread subset of them)."""
    n = len(times)
    if n < 2:
        return 0.0
    step = max(1, n * (n - 1) // 2 // pairs)
    slopes = []
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            k += 1
            if k % step == 0 and times[j] != times[i]:
                slopes.append((values[j] - values[i]) / (times[j] - times[i]))
    return statistics.median(slopes) if slopes else 0.0


def judge(figure: str, times: Sequence[float], values: Sequence[float]) -> Growth:
    """Whether *values* (sampled at *times*, seconds from the start) grow without bound."""
    tolerance = TOLERANCES[figure]
    span = times[-1] - times[0] if times else 0.0
    opening = min(60.0, span / 3)  # the first minute; the first third of a short run
    first = [v for t, v in zip(times, values, strict=True) if t - times[0] <= opening]
    first = first or list(values[:1])
    middle = times[0] + span / 2
    late = [(t, v) for t, v in zip(times, values, strict=True) if t >= middle]
    tail = [v for t, v in zip(times, values, strict=True) if t >= times[0] + span * 0.75]
    tail = tail or list(values[-1:])
    start, high = statistics.median(first), max(first)
    slope = theil_sen([t for t, _ in late], [v for _, v in late]) * 60.0
    end = statistics.median(tail)
    allowed = tolerance.of(start)
    carried = slope * (span / 2) / 60.0
    grows = carried > allowed and end > high + allowed
    return Growth(figure, start, high, end, slope, allowed, grows)
