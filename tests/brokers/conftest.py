"""The broker tests run on asyncio and uvloop: the brokers' clients need asyncio
(trio gets a clear error, which tests ask for with ``anyio_backend="trio"``)."""

from __future__ import annotations

from typing import Any

import pytest

from .broker_contract import Loop

ASYNCIO_LOOPS = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


@pytest.fixture(params=ASYNCIO_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The anyio plugin's backend for the broker tests: asyncio and uvloop."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture(params=ASYNCIO_LOOPS)
def loop(request: pytest.FixtureRequest) -> Loop:
    """The event loop of the contract suite's examples (each runs its own loop)."""
    backend, options = request.param
    return Loop(backend, options)
