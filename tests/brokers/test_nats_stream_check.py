"""Found by the soak (``soak/``): while JetStream restarted, a publish whose stream had to
be checked again raised nats-py's own ``TimeoutError`` instead of an eventcore error.
A private ``nats-server -js`` on a free port, stopped under the publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventcore import Dispatcher, EventcoreError, Overflow
from eventcore.transports.nats import NatsTransport
from eventcore.wire import event

from ._servers import PrivateServer, private_nats


@event("soak.found.checked")
@dataclass(frozen=True)
class Checked:
    n: int


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    with private_nats(tmp_path) as running:
        yield running


def test_a_stream_check_while_jetstream_is_down_raises_an_eventcore_error(
    server: PrivateServer,
) -> None:
    async def scenario() -> Exception | None:
        transport = NatsTransport(
            f"nats://127.0.0.1:{server.port}", group="g", prefix="found",
            publish_timeout=0.5, connect_timeout=1.0,
        )  # fmt: skip
        bus = Dispatcher(transport=transport)
        bus.configure(Checked, overflow=Overflow.RAISE)
        async with bus:
            await bus.publish(Checked(1))
            for route in transport._routes.values():
                route.stream_ready = False  # as after JetStream answered "stream not found"
            await asyncio.to_thread(server.stop)
            try:
                await bus.publish(Checked(2), timeout=3.0)
            except Exception as exc:  # what escapes is the point
                return exc
            finally:
                await asyncio.to_thread(server.start)
        return None

    raised = asyncio.run(scenario())
    assert raised is not None, "a publish with JetStream down cannot succeed"
    assert isinstance(raised, EventcoreError), f"{type(raised).__module__}.{raised!r}"
