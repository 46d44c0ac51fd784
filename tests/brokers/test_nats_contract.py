"""The broker contract suite (``broker_contract.py``) bound to the NATS transport, on
asyncio and uvloop, against the machine's NATS server (skipped with a message when
none answers, failed under ``CI=true``)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest

from eventcore.transports.nats import NatsTransport

from . import broker_contract
from ._servers import NATS_URL, require
from .broker_contract import BrokerKit, Loop
from .nats_kit import delete_streams

PUBLISHER = "publisher"


class NatsKit:
    """Fresh NATS transports under a prefix of their own.

    A JetStream publisher names the groups it writes for (``groups=``): here the
    suite's publisher writes for every consumer group made in its namespace, as a
    real service would list the services that consume its events.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.groups: dict[str, list[str]] = {}
        self.publishers: dict[str, list[NatsTransport]] = {}

    def transport(self, namespace: str, group: str, *, capacity: int | None = None) -> Any:
        groups = self.groups.setdefault(namespace, [])
        publishers = self.publishers.setdefault(namespace, [])
        transport = NatsTransport(
            self.url,
            group=group,
            prefix=namespace,
            max_msgs=capacity,
            fetch_wait=0.1,
            ack_wait=5.0,
        )
        if group == PUBLISHER:
            publishers.append(transport)
        elif group not in groups:
            groups.append(group)
        for publisher in publishers:  # made before any of them starts
            publisher.groups = tuple(groups) or (PUBLISHER,)
        return transport

    async def write_raw(self, namespace: str, name: str, data: bytes) -> None:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for group in self.groups.get(namespace, []):
                await js.publish(f"{namespace}.{group}.{name}.0", data)
        finally:
            await nc.close()

    def cleanup(self, namespace: str) -> None:
        asyncio.run(delete_streams(self.url, namespace))
        self.groups.pop(namespace, None)
        self.publishers.pop(namespace, None)


@pytest.fixture
def kit() -> BrokerKit:
    url = urlsplit(NATS_URL)
    require("NATS", url.hostname or "127.0.0.1", url.port or 4222)
    return NatsKit(NATS_URL)


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
