"""The shared kit of the broker transports: what every transport needs, written
once; a broker's own package (``transports/nats``, ``transports/redis``...) adds
only what talks to its client.

* :mod:`.ledger`: :class:`Ledger`, every fetched message held here until its
  verdict reached the broker (hold / settle / take / done / drop / stale / held);
* :mod:`.settler`: :class:`Settler`, sends a ledger's queued verdicts in batches
  with the transport's ``apply(batch)``, retrying; ``drain`` at close;
* :mod:`.keepalive`: :class:`KeepAlive`, refreshes held messages with the
  transport's ``refresh(stale)`` so the broker never redelivers them meanwhile;
* :mod:`.crew`: :class:`Crew`, the transport's background tasks in the task group
  the dispatcher hands ``open`` (no bare tasks), started at ``open``, stopped at ``close``;
* :mod:`.errors`: :class:`BrokerUnavailable` and the helpers that turn a broker
  client's error into an :class:`~eventcore.EventcoreError` with the server's reason;
* :mod:`.validate`: constructor argument checks (``token``, ``count``,
  ``seconds``, ``choice``, ``groups``, ``url``...) raising ``InvalidConfiguration``;
* :mod:`.retries`: :class:`RetryIds`, a failed publish's event id kept for a
  retry of the same event object (deduplicated by the broker);
* :mod:`.deadline`: a publish's deadline (``send(..., deadline=)``) against the
  transport's own limits;
* :mod:`.common`: key partitions, the asyncio check, redaction of credentials;
* :mod:`.tracecontext`: the publisher's W3C trace context across the broker.

The seam they serve is ``eventcore._transport`` (``send`` / ``source`` /
``open`` / ``close`` / ``broker_stats``). A transport's ``send`` takes, besides
the event, the keyword arguments ``deadline`` (absolute, on
``anyio.current_time()``'s clock) and ``principal`` (written into the envelope).
"""

from __future__ import annotations

from .common import partition_of, redact, require_asyncio, wire_name
from .crew import Crew
from .deadline import answer_wait, deadline_of, remaining
from .errors import BrokerUnavailable, reason_of, refused_send, unavailable, unconfirmed
from .keepalive import KeepAlive
from .ledger import Ledger, Settlement
from .retries import Attempt, RetryIds
from .settler import Settler

__all__ = [
    "Attempt",
    "BrokerUnavailable",
    "Crew",
    "KeepAlive",
    "Ledger",
    "RetryIds",
    "Settlement",
    "Settler",
    "answer_wait",
    "deadline_of",
    "partition_of",
    "reason_of",
    "redact",
    "refused_send",
    "remaining",
    "require_asyncio",
    "unavailable",
    "unconfirmed",
    "wire_name",
]
