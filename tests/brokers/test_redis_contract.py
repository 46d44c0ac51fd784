"""The broker contract suite (``broker_contract.py``) bound to the Redis transport,
on asyncio and uvloop, against the machine's Redis (skipped with a message when
none answers, failed under ``CI=true``)."""

from __future__ import annotations

from typing import Any

import pytest

from eventcore.transports.redis import RedisTransport

from . import broker_contract
from .broker_contract import BrokerKit, Loop
from .redis_support import delete_prefix, raw_client, shared_redis


class RedisKit:
    """Fresh Redis transports under a prefix of their own."""

    def __init__(self, url: str) -> None:
        self.url = url

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        # a short claim_idle: a consumer that left entries pending at shutdown is
        # followed at once by another (a new process would be, after claim_idle)
        return RedisTransport(
            self.url, group=group, prefix=namespace, max_len=capacity, claim_idle=0.2
        )

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        client = raw_client(self.url)
        try:
            await client.xadd(f"{namespace}:{name}", {b"m": data})
        finally:
            await client.aclose()

    def cleanup(self, namespace: str) -> None:
        delete_prefix(self.url, namespace)


@pytest.fixture
def kit() -> BrokerKit:
    return RedisKit(shared_redis())


@pytest.fixture(
    params=[
        pytest.param(Loop("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(Loop("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def loop(request: pytest.FixtureRequest) -> Loop:
    value: Loop = request.param
    return value


def test_1_accepted_means_delivered(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.accepted_means_delivered(kit, loop)


def test_2_nothing_vanishes_silently(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.nothing_vanishes_silently(kit, loop)


def test_3_bounded(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.bounded(kit, loop)


def test_6_isolated(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.isolated(kit, loop)


def test_7_clean_shutdown(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.clean_shutdown(kit, loop)


def test_9_bad_input(kit: BrokerKit, loop: Loop) -> None:
    broker_contract.bad_input(kit, loop)
