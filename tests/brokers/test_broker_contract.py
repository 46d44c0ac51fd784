"""The broker contract suite (``broker_contract.py``), one suite parametrized by
transport: the fake broker (streams per group in memory, messages encoded as on
the wire), NATS JetStream, Redis Streams and RabbitMQ, on asyncio and uvloop, against the
machine's servers (skipped with a message when one does not answer, failed under
``CI=true``). The in-memory transport (no broker) keeps the same promises in one
process: tests/contract (docs/CONTRACT.md has the table)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.fake_broker import FakeHub

from . import broker_contract
from ._servers import NATS_URL, require
from .broker_contract import BrokerKit, Loop
from .nats_kit import NatsKit
from .rabbit_support import RabbitKit, require_shared
from .redis_support import RedisKit, shared_redis


@pytest.fixture(params=["fake", "nats", "redis", "rabbitmq"])
def kit(request: pytest.FixtureRequest) -> BrokerKit:
    """Fresh transports of one broker, each example in a namespace of its own."""
    if request.param == "fake":
        return FakeHub()
    if request.param == "redis":
        return RedisKit(shared_redis())
    if request.param == "rabbitmq":
        return RabbitKit(require_shared())
    url = urlsplit(NATS_URL)
    require("NATS", url.hostname or "127.0.0.1", url.port or 4222)
    return NatsKit(NATS_URL)


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
