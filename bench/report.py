"""Summaries of the runs: the markdown tables with ratios, the targets, the plot."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .contenders import CONTENDERS
from .workloads import Spec

Record = dict[str, Any]
Key = tuple[str, str, str]  # scenario, backend, contender

LOOPS = ("asyncio", "uvloop", "trio")
#: the queued-dispatch floor each loop's ratios divide by (trio has no asyncio.Queue)
FLOOR = {"asyncio": "bare_queue", "uvloop": "bare_queue", "trio": "anyio_stream"}
LABEL = {c.name: c.label for c in CONTENDERS}
ORDER = {c.name: i for i, c in enumerate(CONTENDERS)}
X = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash


def machine() -> dict[str, Any]:
    """Where the benchmark ran: cores, CPU, Python, library versions, eventcore's commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("anyio", "uvloop", "trio", "blinker", "pyee", "aiopubsub", "fastapi-events"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    versions["bubus"] = _version("bubus")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "eventcore": _git_describe(),
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git_describe() -> str:
    """The commit of the eventcore that ran (``BENCH_EVENTCORE_REV`` names a snapshot)."""
    if os.environ.get("BENCH_EVENTCORE_REV"):
        return os.environ["BENCH_EVENTCORE_REV"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "eventcore"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (eventcore/ with uncommitted changes)" if dirty else head


# -- aggregation -----------------------------------------------------------------------


class Summary:
    """Median, min and max over the rounds of one contender in one scenario on one loop."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = records
        ok = [r for r in records if r.get("ok")]
        self.failed = [r for r in records if not r.get("ok") and "skipped" not in r]
        self.skipped = next((r["skipped"] for r in records if "skipped" in r), None)
        rates = [r["events_per_s"] for r in ok if r.get("events_per_s")]
        self.rounds = len(rates)
        self.median = statistics.median(rates) if rates else None
        self.min = min(rates) if rates else None
        self.max = max(rates) if rates else None
        self.n_events = ok[0]["n_events"] if ok else None
        lat = [r["latency_us"] for r in ok if "latency_us" in r]
        self.latency = (
            {q: statistics.median(x[q] for x in lat) for q in ("p50", "p99", "p99.9")}
            if lat
            else None
        )
        rss = [r["rss_growth_mb"] for r in ok if "rss_growth_mb" in r]
        self.rss_mb = max(rss) if rss else None

    @property
    def usable(self) -> bool:
        """Whether every round counted all its calls (a loss disqualifies the contender)."""
        return self.median is not None and not self.failed


def summarize(records: Sequence[Record]) -> dict[Key, Summary]:
    """Group the records by (scenario, loop, contender)."""
    groups: dict[Key, list[Record]] = defaultdict(list)
    for r in records:
        groups[(r["scenario"], r["backend"], r["contender"])].append(r)
    return {key: Summary(rs) for key, rs in groups.items()}


def ratio(s: dict[Key, Summary], a: Key, b: Key) -> float | None:
    """Median events/s of *a* over *b*, when both are usable."""
    x, y = s.get(a), s.get(b)
    if x is None or y is None or not x.usable or not y.usable:
        return None
    assert x.median is not None
    assert y.median is not None
    return float(x.median / y.median)


# -- targets ---------------------------------------------------------------------------


def targets(s: dict[Key, Summary]) -> list[tuple[str, str, float | None, float, bool | None]]:
    """(target, loop, measured, goal, met) for each target of issue 14 (and the peer
    targets of issue 6)."""
    rows: list[tuple[str, str, float | None, float, bool | None]] = []

    def add(name: str, loop: str, value: float | None, goal: float, higher: bool) -> None:
        met = None if value is None else (value >= goal if higher else value <= goal)
        rows.append((name, loop, value, goal, met))

    for loop in ("asyncio", "uvloop"):
        ec = ("1type", loop, "eventcore")
        add(
            f"1 type: {X} bare asyncio.Queue",
            loop,
            ratio(s, ec, ("1type", loop, "bare_queue")),
            1.5,
            True,
        )
        add(f"1 type: {X} blinker", loop, ratio(s, ec, ("1type", loop, "blinker")), 2.0, True)
        add(f"1 type: {X} pyee", loop, ratio(s, ec, ("1type", loop, "pyee")), 20.0, True)
        add(
            f"fan-out 10: {X} bare `await handler` loop",
            loop,
            ratio(s, ("fanout10", loop, "eventcore"), ("fanout10", loop, "bare_loop")),
            0.9,
            True,
        )
        add(
            f"10,000 types: {X} bare single queue",
            loop,
            ratio(s, ("types10000", loop, "eventcore"), ("types10000", loop, "bare_queue")),
            1.3,
            True,
        )
        add(
            f"`publish_and_wait`: {X} bare queue + future",
            loop,
            ratio(s, ("roundtrip", loop, "eventcore"), ("roundtrip", loop, "bare_queue")),
            0.7,
            True,
        )
        lat, floor = s.get(("latency", loop, "eventcore")), s.get(("latency", loop, "bare_queue"))
        p99 = None
        if lat and floor and lat.latency and floor.latency:
            p99 = lat.latency["p99"] / floor.latency["p99"]
        add(f"latency p99: {X} bare queue p99", loop, p99, 1.5, False)
    for scenario, title in (("1type", "1 type"), ("types10000", "10,000 types")):
        add(
            f"{title}: {X} anyio memory stream",
            "trio",
            ratio(s, (scenario, "trio", "eventcore"), (scenario, "trio", "anyio_stream")),
            1.0,
            True,
        )
    for loop in LOOPS:
        over = s.get(("overload", loop, "eventcore"))
        if over is not None:
            add("overload: peak RSS growth, MB", loop, over.rss_mb, 16.0, False)
    return rows


# -- markdown --------------------------------------------------------------------------


def _rate(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def _cell(sm: Summary | None) -> str:
    if sm is None:
        return ""
    if sm.skipped:
        return "skipped"
    if sm.failed:
        why = sm.failed[0].get("error") or "failed"
        return f"**FAILED** ({len(sm.failed)} of {len(sm.records)}: {why})"
    return f"{_rate(sm.median)} ({_rate(sm.min)}{DASH}{_rate(sm.max)})"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}{X}"


def _contenders(s: dict[Key, Summary], scenario: str) -> list[str]:
    names = {c for (sc, _, c) in s if sc == scenario}
    return sorted(names, key=ORDER.__getitem__)


def _loops(s: dict[Key, Summary], scenario: str) -> list[str]:
    present = {b for (sc, b, _) in s if sc == scenario}
    return [b for b in LOOPS if b in present]


def markdown(
    records: Sequence[Record],
    specs: Sequence[Spec],
    meta: dict[str, Any],
    command: str,
    plot: str | None,
) -> str:
    """The whole report: machine, command, targets, one table per scenario."""
    s = summarize(records)
    m = meta["machine"]
    out = [
        "# eventcore benchmark results",
        "",
        (
            f"Command: `{command}` — {meta['started']}, {meta['minutes']:.1f} min, "
            f"{meta['rounds']} rounds per scenario (median, min{DASH}max), a fresh event loop per "
            "round, contenders interleaved round by round. Every handler counts its calls: a "
            "run that lost events is reported as failed, not timed."
        ),
        "",
        *(
            [
                (
                    "**A quick run**: a twentieth of the events, so fixed per-run costs "
                    "(starting workers, first visits of each type) weigh far more than in "
                    "`make bench`; its ratios are a smoke test, not the figures to quote."
                ),
                "",
            ]
            if meta.get("quick")
            else []
        ),
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['implementation']} {m['python']}, "
        f"{m['os']}; loops: asyncio, uvloop {m['versions']['uvloop']}, trio "
        f"{m['versions']['trio']} (anyio {m['versions']['anyio']}); eventcore at "
        f"{m['eventcore']}. Peers: "
        + ", ".join(
            f"{d} {v}" for d, v in m["versions"].items() if d not in ("anyio", "uvloop", "trio")
        )
        + ".",
        "",
        (
            "The machine is shared: load average "
            f"{meta['load_average'][0][0]:.2f} at the start, "
            f"{meta['load_average'][1][0]:.2f} at the end (1 min). Rates are wall-clock "
            "medians; the JSON also holds each run's CPU time (`events_per_cpu_s`), "
            "which other processes disturb less."
        ),
        "",
        (
            "Ratios divide by the queued-dispatch floor: the bare `asyncio.Queue(1024)` with "
            "worker tasks on asyncio and uvloop; on trio (no asyncio.Queue) the anyio memory "
            "stream. Slow peers get fewer events (the count is in the JSON)."
        ),
        "",
        "## Targets (issue 14; the peer rows from issue 6)",
        "",
        "| target | loop | measured | goal | |",
        "|---|---|---|---|---|",
    ]
    for name, loop, value, goal, met in targets(s):
        mb = "MB" in name
        shown = "—" if value is None else (f"{value:.1f} MB" if mb else f"{value:.2f}{X}")
        want = (
            f"≤ {goal:g} MB"
            if mb
            else (f"≤ {goal:g}{X}" if "latency" in name else f"≥ {goal:g}{X}")
        )
        verdict = "n/a" if met is None else ("met" if met else "**not met**")
        out.append(f"| {name} | {loop} | {shown} | {want} | {verdict} |")
    if plot:
        out += ["", f"![throughput and latency]({plot})"]
    for spec in specs:
        out += ["", f"## {spec.title}", ""]
        loops = _loops(s, spec.scenario)
        names = _contenders(s, spec.scenario)
        if not loops:
            out.append("(not run)")
            continue
        if spec.scenario == "latency":
            out += _latency_table(s, spec, loops, names)
        elif spec.scenario == "overload":
            out += _overload_table(s, spec, loops, names)
        else:
            unit = "round trips/s" if spec.mode == "roundtrip" else "events/s"
            head = "| contender | " + " | ".join(f"{b} {unit} | {X} floor" for b in loops) + " |"
            out += [head, "|---|" + "---|---|" * len(loops)]
            for name in names:
                cells = []
                for b in loops:
                    sm = s.get((spec.scenario, b, name))
                    r = ratio(s, (spec.scenario, b, name), (spec.scenario, b, FLOOR[b]))
                    cells += [_cell(sm), _x(r) if sm and not sm.skipped else ""]
                out.append(f"| {LABEL[name]} | " + " | ".join(cells) + " |")
        out += _skips(s, spec.scenario, names)
    return "\n".join(out) + "\n"


def _latency_table(
    s: dict[Key, Summary], spec: Spec, loops: list[str], names: list[str]
) -> list[str]:
    out = [
        (
            "Publish-to-handler-start, µs, median over the rounds of each percentile; the "
            "producer publishes each event when it is due (spinning on a zero sleep)."
        ),
        "",
        f"| contender | loop | p50 | p99 | p99.9 | p99 {X} floor |",
        "|---|---|---|---|---|---|",
    ]
    for b in loops:
        floor = s.get((spec.scenario, b, FLOOR[b]))
        for name in names:
            sm = s.get((spec.scenario, b, name))
            if sm is None or sm.skipped:
                continue
            if sm.latency is None:
                out.append(f"| {LABEL[name]} | {b} | {_cell(sm)} | | | |")
                continue
            lat = sm.latency
            r = lat["p99"] / floor.latency["p99"] if floor and floor.latency else None
            out.append(
                f"| {LABEL[name]} | {b} | {lat['p50']:.0f} | {lat['p99']:.0f} | "
                f"{lat['p99.9']:.0f} | {_x(r)} |"
            )
    return out


def _overload_table(
    s: dict[Key, Summary], spec: Spec, loops: list[str], names: list[str]
) -> list[str]:
    out = [
        (
            f"{spec.n_events:,} events (slow peers fewer: their growth is linear in the "
            "count) published as fast as each contender accepts them into a handler "
            "spinning ~20 µs; each run in a fresh process; growth = peak resident set "
            "(sampled every 2 ms) minus the resident set after a warm-up."
        ),
        "",
        "| contender | loop | events | peak RSS growth | events/s |",
        "|---|---|---|---|---|",
    ]
    for b in loops:
        for name in names:
            sm = s.get((spec.scenario, b, name))
            if sm is None or sm.skipped:
                continue
            mb = "—" if sm.rss_mb is None else f"{sm.rss_mb:.1f} MB"
            n = f"{sm.n_events:,}" if sm.n_events else "—"
            out.append(f"| {LABEL[name]} | {b} | {n} | {mb} | {_cell(sm)} |")
    return out


def _skips(s: dict[Key, Summary], scenario: str, names: list[str]) -> list[str]:
    reasons: dict[str, set[str]] = defaultdict(set)
    for (sc, _, name), sm in s.items():
        if sc == scenario and sm.skipped:
            reasons[name].add(sm.skipped)
    if not reasons:
        return []
    out = [
        "",
        "Left out: "
        + "; ".join(f"{LABEL[n]}: {', '.join(sorted(reasons[n]))}" for n in names if n in reasons)
        + ".",
    ]
    return out


# -- plot ------------------------------------------------------------------------------


def plot(records: Sequence[Record], specs: Sequence[Spec], path: Path) -> None:
    """Throughput by scenario and contender (asyncio, uvloop), latency percentiles, memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarize(records)
    timed = [sp.scenario for sp in specs if sp.scenario not in ("latency", "overload")]
    fig, axes = plt.subplots(2, 2, figsize=(16, 10))
    colors = plt.get_cmap("tab10")
    for ax, loop in zip(axes[0], ("asyncio", "uvloop"), strict=True):
        names = [c.name for c in CONTENDERS]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs, ys = [], []
            for j, sc in enumerate(timed):
                sm = s.get((sc, loop, name))
                if sm is not None and sm.usable and sm.median:
                    xs.append(j + (i - len(names) / 2) * width + width / 2)
                    ys.append(sm.median)
            if ys:
                ax.bar(xs, ys, width, label=name, color=colors(i))
        ax.set_yscale("log")
        ax.set_xticks(range(len(timed)), timed, rotation=30)
        ax.set_ylabel("events/s (median; round trips/s for roundtrip)")
        ax.set_title(f"throughput on {loop}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)

    ax = axes[1][0]
    bars = [
        (f"{name}\n{loop}", sm.latency)
        for loop in LOOPS
        for name in (c.name for c in CONTENDERS)
        if (sm := s.get(("latency", loop, name))) is not None and sm.latency
    ]
    for i, q in enumerate(("p50", "p99", "p99.9")):
        ax.bar(
            [j + (i - 1) * 0.27 for j in range(len(bars))],
            [lat[q] for _, lat in bars],
            0.27,
            label=q,
        )
    ax.set_xticks(range(len(bars)), [b for b, _ in bars], fontsize=7, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("publish-to-handler-start, µs")
    ax.set_title("latency at 20,000 ev/s")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)

    ax = axes[1][1]
    mem = [
        (f"{name}\n{loop}", sm.rss_mb)
        for loop in LOOPS
        for name in (c.name for c in CONTENDERS)
        if (sm := s.get(("overload", loop, name))) is not None and sm.rss_mb is not None
    ]
    ax.bar(range(len(mem)), [max(m, 0.1) for _, m in mem], color="tab:red")
    ax.axhline(16, color="k", linestyle="--", linewidth=1, label="target: 16 MB")
    ax.set_xticks(range(len(mem)), [m for m, _ in mem], fontsize=7, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("peak RSS growth, MB")
    ax.set_title("overload: ~20 µs handler")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
