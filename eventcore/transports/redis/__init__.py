"""Redis Streams: event types through consumer groups (``pip install "eventcore-py[redis]"``).

::

    from eventcore.transports.redis import RedisTransport

    bus = Dispatcher(transport=RedisTransport("redis://127.0.0.1:6379/0", group="billing"))

The mapping (see ``docs/TRANSPORTS.md``):

* one stream per event type, ``{prefix}:{name}`` (a keyed type with
  ``partitions=n`` also has ``{prefix}:{name}:1`` ... ``:{n-1}``, chosen by a
  hash of the key); one consumer group per service (``group``); one consumer
  per process and transport (host, pid and a random suffix: ``consumer``);
* publish: a publisher that names ``groups`` creates those consumer groups on a
  stream before its first write there (a group whose processes start later still
  gets what was published for it); one Lua script per event (``XLEN``, and at
  the length limit a trim below what every group still needs, then ``XADD``),
  the concurrent publishes of one event-loop tick in one pipeline; ``send``
  returns once Redis answered;
  a stream at ``max_len``, an unreachable Redis, or a deadline passed before the
  write left raise :class:`~eventcore.QueueFull` (the type's overflow policy
  decides); a write whose answer did not come raises
  :class:`~eventcore.PublishUnconfirmed`;
* consume: ``XREADGROUP`` at most the room the local queue has, own pending
  entries first (``0``), then new ones (``>``); entries idle past
  ``claim_idle`` in crashed consumers are claimed (``XAUTOCLAIM``) by the next
  fetch that has room; an entry delivered more than ``max_deliver`` times goes
  to the dead-letter stream ``{prefix}:dead:{name}`` in one script with its
  ``XACK``;
* settle: ``XACK`` in batches on the transport's own task (HANDLED, FAILED),
  FAILED and REJECTED also write the entry to the dead-letter stream in the same
  script; SHUTDOWN leaves the entry pending (this consumer re-reads it when it
  starts again, another one claims it after ``claim_idle``).

A consumer group that vanishes (Redis restarted without persistence, the key
deleted) raises :class:`GroupVanished` on every fetch, loudly logged by the
dispatcher; it is recreated (from ``0``, never ``$``) only with ``recreate_group=True``.

The package: ``transport`` (the transport, its life), ``publish``, ``consume``,
``settle`` (the ack logic, keep-alive and janitor), ``layout`` (groups, leases),
``settings``, ``scripts`` (Lua) and ``client`` (the redis-py import), over the
shared kit (``eventcore.transports._kit``).
"""

from __future__ import annotations

from .client import aioredis as _client  # noqa: F401  (a clear error without redis-py)
from .consume import GroupVanished, RedisReceipt, RedisSource
from .transport import RedisTransport

__all__ = ["GroupVanished", "RedisReceipt", "RedisSource", "RedisTransport"]
