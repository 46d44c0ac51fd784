"""Shared fixtures: every backend-neutral test runs on asyncio, uvloop and trio."""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

BACKENDS = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The anyio plugin's backend: asyncio, asyncio with uvloop, and trio."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=20, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: how long the interpreter may take to exit once the session ended (s)
_EXIT_WITHIN = 60.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run on a thread a test left behind: a non-daemon thread that is still
    running (a blocked plain handler, say) would otherwise keep the interpreter from
    exiting after the summary, and CI would hang instead of failing.

    Under pytest-xdist this runs in each worker, whose exit status the controller
    ignores: a worker hands its report to the controller (``workeroutput``), which
    prints it and fails the run (:func:`pytest_testnodedown`)."""
    deadline = time.monotonic() + 5.0  # idle anyio worker threads stop on their own
    while (left := _leftover_threads()) and time.monotonic() < deadline:
        time.sleep(0.05)
    reports: list[str] = session.config.stash.get(_WORKER_REPORTS, [])
    if left:
        frames = sys._current_frames()
        report = [f"{len(left)} non-daemon thread(s) still running after the tests:"]
        for thread in left:
            frame = frames.get(thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)\n"
            report.append(f"--- {thread.name}\n{stack}")
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports, fails
            workeroutput[_LEFTOVER_KEY] = "\n".join(report)
        else:
            reports.append("\n".join(report))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if reports:
        print("\n".join(reports), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFTOVER_KEY = "eventcore_leftover_threads"
_WORKER_REPORTS = pytest.StashKey[list[str]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: keep a worker's report of leftover threads."""
    report = getattr(node, "workeroutput", {}).get(_LEFTOVER_KEY)
    if report:
        node.config.stash.setdefault(_WORKER_REPORTS, []).append(f"[{node.gateway.id}] {report}")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Whatever still holds the interpreter (a thread, an atexit hook): after
    ``_EXIT_WITHIN`` seconds print every thread's stack and exit with status 1."""
    faulthandler.dump_traceback_later(_EXIT_WITHIN, exit=True)


def _leftover_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
