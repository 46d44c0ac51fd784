"""Scale-out on NATS JetStream: a FastAPI producer and two worker processes sharing the load.

``make demo-nats`` runs it (``python -m examples.nats_scaleout``): it uses the
NATS server on 127.0.0.1:4222, or starts a private ``nats-server -js`` on a free
port with a temporary store when none answers; starts two worker processes and
the FastAPI producer (uvicorn on 127.0.0.1); sends orders to ``POST /orders``
for a few seconds; and shows a live table of what each worker handled. Every
process uses the same ``NatsTransport(group="orders")``: the workers compete for
the events of one durable consumer, so each order is handled once, by one of them.

The roles run on their own too::

    python -m examples.nats_scaleout worker w1 --url nats://127.0.0.1:4222
    uvicorn examples.nats_scaleout:app     # with EVENTCORE_NATS_URL set
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from eventcore.transports.nats import NatsTransport
from examples._scaleout import PREFIX, Broker, OrderPlaced, answers, free_port, main, make_app

__all__ = ["BROKER", "OrderPlaced", "app", "transport"]

URL = os.environ.get("EVENTCORE_NATS_URL", "nats://127.0.0.1:4222")


def transport(url: str = URL) -> NatsTransport:
    """The transport every process of the service uses: one group, so they share work."""
    return NatsTransport(url, group="orders", prefix=PREFIX, fetch_wait=0.2)


def _server(store: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """The machine's NATS on 4222, or a private one on a free port."""
    if URL == "nats://127.0.0.1:4222" and answers(4222):
        return URL, None
    program = shutil.which("nats-server")
    if program is None:
        sys.exit("no NATS answers on 127.0.0.1:4222 and nats-server is not on PATH")
    port = free_port()
    server = subprocess.Popen(
        [program, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not answers(port):
        time.sleep(0.05)
    print(f"started a private nats-server on 127.0.0.1:{port}")
    return f"nats://127.0.0.1:{port}", server


def _delete_streams(url: str) -> None:
    async def delete() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(PREFIX + "_"):
                await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(delete())


BROKER = Broker(
    label="NATS JetStream",
    module="examples.nats_scaleout",
    url_variable="EVENTCORE_NATS_URL",
    transport=transport,
    server=_server,
    cleanup=_delete_streams,
)

app = make_app(BROKER, URL) if os.environ.get("EVENTCORE_NATS_URL") else None

if __name__ == "__main__":
    main(BROKER, URL)
