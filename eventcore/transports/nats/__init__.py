"""NATS JetStream: route event types through streams and durable pull consumers.

::

    from eventcore import Dispatcher
    from eventcore.transports.nats import NatsTransport

    bus = Dispatcher(transport=NatsTransport("nats://127.0.0.1:4222", group="billing"))

How a routed type maps onto JetStream (``prefix`` defaults to ``eventcore``):

* a stream per event type and consumer group, ``<prefix>_<group>__<name>`` (dots of
  the registered name become underscores), on the subjects
  ``<prefix>.<group>.<name>.<partition>``, with work-queue retention: it keeps a
  message until its group acknowledged it, also when no process of the group has
  started yet. ``publish`` writes to the stream of every group in ``groups``
  (default: the transport's own group, the common case of one service whose
  processes both publish and consume). A stream is bounded by ``max_msgs`` /
  ``max_bytes`` with *discard new*: a full stream (its consumers behind) refuses
  the write, and the type's overflow policy decides what ``publish`` does.
  (Interest retention, one stream shared by all groups, lost messages across a
  server restart here; work queues did not.)
* a durable pull consumer per stream, shared by every process of the group:
  competing consumers, each event handled by one process of each group;
* a type with a ``key``: ``partitions`` consumers, one per partition of the key's
  hash, each with one message in flight at a time across the whole service, so
  the events of one key are handled in order by one process at a time (the
  trade-off: a partition is handled serially, so ``partitions`` bounds the type's
  parallelism across the service);
* dead letters of routed types are also written to the stream
  ``<prefix>_dead_letters`` (subject ``<prefix>.dead.<name>``) with the reason in
  headers, before the original message is acknowledged.

``publish`` returns once JetStream acknowledged the write; the message id header
(``Nats-Msg-Id``) is the event id, so a retry after :class:`PublishUnconfirmed`
of the same event object is deduplicated within ``duplicate_window``. A fetched message ends in one
verdict: handled -> ack; failed after the local retries -> dead letter, ack;
shutdown before it was handled -> nak (another process takes it at once);
undecodable, unknown, or delivered more than ``max_deliver`` times -> dead
letter, term. Retries happen in the process (the type's ``Retry``), never as a
delayed nak, which would hold a place in ``max_ack_pending`` meanwhile; every
message held here, queued or running, is kept alive with ``in_progress`` every
quarter of ``ack_wait``, so a message waiting in the local queue is never redelivered
elsewhere while it waits.

The package: ``transport`` (the transport, its life), ``publish``, ``consume``,
``settle`` (the ack logic), ``layout`` (streams and consumers) and ``settings``,
over the shared kit (``eventcore.transports._kit``).

Runs on asyncio and uvloop (nats-py needs asyncio); on trio, starting a
dispatcher with a NATS-routed type raises :class:`~eventcore.InvalidConfiguration`.
"""

from __future__ import annotations

try:
    import nats  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "eventcore.transports.nats needs nats-py: pip install 'eventcore-py[nats]'", name=exc.name
    ) from exc

from .consume import NatsSource
from .settle import NatsReceipt
from .transport import NatsTransport

__all__ = ["NatsReceipt", "NatsSource", "NatsTransport"]
