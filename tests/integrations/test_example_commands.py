"""Each example app runs with one command, serves requests, and drains on Ctrl+C/SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parent.parent.parent
BIN = Path(sys.executable).parent


def run_example(command: list[str], ready: str, stop: signal.Signals) -> tuple[str, int]:
    """Start *command*, wait for the line matching *ready* (it names the URL), place
    orders, stop it with *stop*; return everything it printed and its exit code."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            found = re.search(ready, line)
            if found:
                url = found.group(1)
                break
        else:
            pytest.fail("the example exited before serving:\n" + "".join(lines))
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(20):
                response = client.post("/orders", json={"order_id": f"c{i}", "total": 1.0})
                assert response.status_code == 202
            assert client.get("/stats").status_code == 200
            assert "eventcore_events_accepted_total" in client.get("/metrics").text
        proc.send_signal(stop)
        rest, _ = proc.communicate(timeout=60)
        return "".join(lines) + rest, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fastapi_example_runs_with_uvicorn() -> None:
    output, code = run_example(
        [str(BIN / "uvicorn"), "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", "0"],
        r"Uvicorn running on (http://127\.0\.0\.1:\d+)",
        signal.SIGTERM,
    )
    assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal it caught
    assert "OrderPlaced 20/20 (abandoned 0)" in output, output


def test_aiohttp_example_runs_as_a_module() -> None:
    output, code = run_example(
        [sys.executable, "-m", "examples.aiohttp_app", "--port", "0"],
        r"serving on (http://127\.0\.0\.1:\d+)",
        signal.SIGINT,
    )
    assert code == 0, output
    assert "OrderPlaced 20/20 (abandoned 0)" in output, output
