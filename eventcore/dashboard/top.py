"""``eventcore top URL``: the dashboard's feed in a terminal, like ``htop`` for the dispatcher.

It reads the same Server-Sent Events stream as the page (``URL/events``; the
standard library's HTTP client in a worker thread, so it runs anywhere Python
does) and draws one table per sample with rich. Keys: ``d`` sort by depth, ``r``
by rate, ``n`` by name, ``q`` quits. ``--once`` prints one table from
two reads of ``snapshot.json`` a second apart (so that the rates are true) and
exits (for scripts).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import anyio
import anyio.to_thread

SORTS = ("depth", "rate", "name")

#: depth/capacity, events per second, in flight/limit, handler latency in ms, handled in
#: all, and the broker's pending/redelivered messages
COLUMNS = ("type", "depth", "acc", "hdl", "drop", "fail", "busy", "p50", "p95", "p99",
           "handled", "broker")  # fmt: skip


def base_url(url: str) -> str:
    """*url* with the trailing slash that relative routes need."""
    return url if url.endswith("/") else url + "/"


def auth_headers(user: str | None, password: str | None, extra: list[str]) -> dict[str, str]:
    """The request headers: HTTP Basic for *user*, plus ``Name: value`` strings."""
    headers: dict[str, str] = {"accept": "text/event-stream"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    for header in extra:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def ordered(sample: Mapping[str, Any], sort: str) -> list[tuple[str, dict[str, Any]]]:
    """The sample's types in the order *sort* asks for (busiest first)."""
    rows = list(sample.get("types", {}).items())
    if sort == "depth":
        rows.sort(key=lambda item: (-item[1]["depth"], item[0]))
    elif sort == "rate":
        rows.sort(
            key=lambda item: (-(item[1]["handled_rate"] + item[1]["accepted_rate"]), item[0])
        )
    else:
        rows.sort(key=lambda item: item[0])
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    """One table row of a type."""
    broker = row.get("broker")
    pending = "-" if not broker else f"{broker['pending']}/{broker['redelivered']}"
    return (
        row["name"] + (" ‖" if row["paused"] else ""),
        f"{row['depth']}/{row['capacity']}",
        f"{row['accepted_rate']:.0f}",
        f"{row['handled_rate']:.0f}",
        f"{row['dropped_rate']:.0f}",
        f"{row['failed_rate']:.0f}",
        f"{row['in_flight']}/{row['limit']}",
        _ms(row["p50"]),
        _ms(row["p95"]),
        _ms(row["p99"]),
        str(row["handled"]),
        pending,
    )


def table(sample: Mapping[str, Any], sort: str, url: str, letters: int | None = None) -> Any:
    """The rich table of one sample."""
    from rich.table import Table

    dead = sample.get("dead_letters", 0) if letters is None else letters
    title = f"eventcore top  {url}  sort: {sort}  dead letters: {dead}"
    from rich import box

    caption = (
        "depth/capacity · acc hdl drop fail: per second · busy: in flight/limit · "
        "p50 p95 p99: ms · ‖ paused · d depth · r rate · n name · q quit"
    )
    view = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 1))
    rows = ordered(sample, sort)
    longest = max((len(row["name"]) + 2 for _, row in rows), default=4)
    view.add_column("type", no_wrap=True, min_width=min(24, longest))
    for column in COLUMNS[1:]:
        view.add_column(column, justify="right", min_width=len(column))
    for _, row in rows:
        view.add_row(*cells(row), style="yellow" if row["paused"] else None)
    return view


RATES = ("accepted", "handled", "dropped", "failed")


def with_rates(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """*after* with its per-second rates computed from the counters of both samples.

    A sample read while nobody watches has no previous one to measure against, so
    its rates say 0 (or average over a stale interval): ``--once`` takes two.
    """
    elapsed = after.get("t", 0) - before.get("t", 0)
    if elapsed <= 0:
        return dict(after)  # the same sample twice: the sampler's own rates stand
    earlier = before.get("types", {})
    types: dict[str, Any] = {}
    for key, row in after.get("types", {}).items():
        was = earlier.get(key)
        row = dict(row)
        for name in RATES:
            change = row[name] - was[name] if was is not None else 0
            row[f"{name}_rate"] = round(max(0, change) / elapsed, 2)
        types[key] = row
    return {**after, "types": types}


def snapshot_once(url: str, headers: Mapping[str, str], gap: float = 1.0) -> dict[str, Any]:
    """``snapshot.json`` read twice, *gap* seconds apart, with the rates between them."""
    first = snapshot(url, headers)
    time.sleep(gap)
    answer = snapshot(url, headers)
    answer["sample"] = with_rates(first["sample"], answer["sample"])
    return answer


def snapshot(url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """``snapshot.json`` of the dashboard at *url*."""
    request = urllib.request.Request(base_url(url) + "snapshot.json", headers=dict(headers))
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def parse_events(lines: Iterator[bytes]) -> Iterator[tuple[str, Any]]:
    """(event, data) of each Server-Sent Event in *lines* (comments skipped)."""
    kind, data = "message", list[str]()
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", list[str]()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def run_top(
    url: str,
    headers: Mapping[str, str],
    *,
    sort: str = "depth",
    frames: int | None = None,
    out: IO[str] | None = None,
) -> int:
    """Show the feed of the dashboard at *url* until ``q`` (or *frames* samples).

    :return: the number of samples shown
    """
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out, width=160) if out is not None else Console()
    request = urllib.request.Request(base_url(url) + "events", headers=dict(headers))
    response = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(request, timeout=60))
    state = {"sort": sort, "quit": False}
    shown = 0
    letters: int | None = None
    try:
        events = parse_events(iter(response.readline, b""))
        with Live(console=console, auto_refresh=False) as live, _keys(state):
            while not state["quit"]:
                item = await anyio.to_thread.run_sync(
                    lambda: next(events, None), abandon_on_cancel=True
                )
                if item is None:
                    break
                kind, data = item
                if kind == "hello":
                    letters = len(data["letters"])
                    samples = data["history"][-1:]
                else:
                    if "letters" in data:
                        letters = len(data["letters"])
                    samples = [data["sample"]]
                for sample in samples:
                    live.update(table(sample, str(state["sort"]), url, letters), refresh=True)
                    shown += 1
                if frames is not None and shown >= frames:
                    break
    finally:
        response.close()
    return shown


@contextlib.contextmanager
def _keys(state: dict[str, Any]) -> Iterator[None]:
    """Read single keys from a terminal in a daemon thread (nothing when stdin is not one)."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import threading
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    actions: dict[str, Callable[[], None]] = {
        "q": lambda: state.update(quit=True),
        "d": lambda: state.update(sort="depth"),
        "r": lambda: state.update(sort="rate"),
        "n": lambda: state.update(sort="name"),
    }

    def read() -> None:
        while not state["quit"]:
            key = sys.stdin.read(1)
            if not key:
                return
            action = actions.get(key.lower())
            if action is not None:
                action()

    tty.setcbreak(fd)
    try:
        threading.Thread(target=read, daemon=True, name="eventcore-top-keys").start()
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
