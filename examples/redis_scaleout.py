"""Scale-out on Redis Streams: a FastAPI producer and two worker processes sharing the load.

``make demo-redis`` runs it (``python -m examples.redis_scaleout``): it uses the
Redis on 127.0.0.1:6379 (or ``EVENTCORE_REDIS_URL``), or starts a private
``redis-server`` on a free port with a temporary directory when none answers;
starts two worker processes and the FastAPI producer (uvicorn on 127.0.0.1);
sends orders to ``POST /orders`` for a few seconds; and shows a live table of
what each worker handled. Every process uses the same
``RedisTransport(group="orders")``: the workers are consumers of one consumer
group, so each order is handled once, by one of them. ``make demo-nats`` is the
same on NATS JetStream.

The roles run on their own too::

    python -m examples.redis_scaleout worker w1 --url redis://127.0.0.1:6379/0
    uvicorn examples.redis_scaleout:app     # with EVENTCORE_REDIS_URL set
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from eventcore.transports.redis import RedisTransport
from examples._scaleout import PREFIX, Broker, OrderPlaced, answers, free_port, main, make_app

__all__ = ["BROKER", "OrderPlaced", "app", "transport"]

DEFAULT = "redis://127.0.0.1:6379/0"
URL = os.environ.get("EVENTCORE_REDIS_URL", DEFAULT)


def transport(url: str = URL) -> RedisTransport:
    """The transport every process of the service uses: one group, so they share work."""
    return RedisTransport(url, group="orders", prefix=PREFIX)


def _server(store: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """The machine's Redis on 6379, or a private one on a free port."""
    if URL != DEFAULT or answers(6379):
        return URL, None
    program = shutil.which("redis-server")
    if program is None:
        sys.exit("no Redis answers on 127.0.0.1:6379 and redis-server is not on PATH")
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(store),
         "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not answers(port):
        time.sleep(0.05)
    print(f"started a private redis-server on 127.0.0.1:{port}")
    return f"redis://127.0.0.1:{port}/0", server


def _delete_streams(url: str) -> None:
    """Delete the demo's keys (its streams, groups' leases and dead letters)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass  # the private server is gone, and its keys with it
    finally:
        client.close()


BROKER = Broker(
    label="Redis Streams",
    module="examples.redis_scaleout",
    url_variable="EVENTCORE_REDIS_URL",
    transport=transport,
    server=_server,
    cleanup=_delete_streams,
)

app = make_app(BROKER, URL) if os.environ.get("EVENTCORE_REDIS_URL") else None

if __name__ == "__main__":
    main(BROKER, URL)
