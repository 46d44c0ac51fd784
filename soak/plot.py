"""The soak's samples as one PNG: a row per figure, a line per backend, faults marked."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .verdict import MEMORY, TRIMMED, judge

FIGURES = (
    (MEMORY, "RSS (MiB) after\nmalloc_trim; faint:\nbefore"),
    ("fds", "open fds"),
    ("tasks", "asyncio tasks"),
    ("threads", "threads"),
    ("backlog", "queued + in flight"),
    ("accepted", "accepted (total)"),
)
COLORS = {"memory": "tab:blue", "nats": "tab:green", "redis": "tab:red"}


def plot(out: Path, backends: list[str], feed: float) -> Path:
    """Draw ``out/soak.png`` from ``out/<backend>/samples.jsonl``; the path returned."""
    fig, axes = plt.subplots(len(FIGURES), 1, figsize=(11, 2.2 * len(FIGURES)), sharex=True)
    for name in backends:
        path = out / name / "samples.jsonl"
        if not path.exists():
            continue
        samples = [json.loads(line) for line in path.read_text().splitlines() if line]
        times = [s["t"] / 60 for s in samples]
        report = out / "report.json"
        faults = []
        if report.exists():
            for r in json.loads(report.read_text()):
                if r["backend"] == name:
                    faults = [t for t, what in r["faults"] if what == "broker restarted"]
        trimmed = [s for s in samples if TRIMMED in s]
        for ax, (figure, label) in zip(axes, FIGURES, strict=True):
            values = [s.get(figure, 0) for s in samples]
            judged, shown = figure, samples
            if figure == MEMORY and trimmed:  # the judged line solid, the untrimmed faint
                ax.plot(times, values, color=COLORS.get(name), linewidth=0.6, alpha=0.3)
                judged, shown = TRIMMED, trimmed
                ax.plot([s["t"] / 60 for s in shown], [s[TRIMMED] for s in shown],
                        color=COLORS.get(name), linewidth=0.9, label=name)  # fmt: skip
            else:
                ax.plot(times, values, color=COLORS.get(name), linewidth=0.8, label=name)
            ax.set_ylabel(label, fontsize=8)
            for t in faults:
                ax.axvline(t / 60, color=COLORS.get(name), alpha=0.15, linewidth=0.8)
            during = [(s["t"], float(s.get(judged, 0))) for s in shown if s["t"] <= feed]
            if judged != "accepted" and len(during) >= (5 if judged == TRIMMED else 20):
                verdict = judge(judged, [t for t, _ in during], [v for _, v in during])
                if verdict.grows:
                    ax.set_title(f"{name}: {judged} GROWS", color="red", fontsize=8)
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[-1].set_xlabel("minutes (shaded: broker restarts; after the dashed line: settling)")
    for ax in axes:
        ax.axvline(feed / 60, color="black", linestyle="--", linewidth=0.7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("eventcore soak under faults: one sample per second", fontsize=10)
    fig.tight_layout()
    target = out / "soak.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
