"""Prometheus metrics of an outbox relay and an inbox (prometheus-client)::

    from eventcore.outbox.prometheus import OutboxCollector

    REGISTRY.register(OutboxCollector(relay=relay, inbox=inbox))

Read when Prometheus scrapes, labelled by ``table``: the gauges
``eventcore_outbox_backlog`` (rows committed, not yet sent),
``eventcore_outbox_oldest_age_seconds`` and ``eventcore_outbox_leader``; the counters
``eventcore_outbox_{sent,dead_lettered,retried,errors}_total`` and
``eventcore_inbox_{handled,duplicates,failed,expired}_total``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._inbox import Inbox
from ._relay import Relay

__all__ = ["OutboxCollector"]

_RELAY_COUNTERS = (
    ("sent", "Outbox rows sent to their route and removed."),
    ("dead_lettered", "Outbox rows moved to the dead-letter table."),
    ("retried", "Sends that failed for now (the rows stay)."),
    ("errors", "Database errors met by the relay (each followed by a reconnect)."),
)
_INBOX_COUNTERS = (
    ("handled", "Events whose idempotent handler committed with its inbox row."),
    ("duplicates", "Redeliveries acknowledged without running the handler."),
    ("failed", "Idempotent handler calls that raised (rolled back)."),
    ("expired", "Inbox rows removed after the retention."),
)


class OutboxCollector(Collector):
    """The figures of a :class:`Relay` and/or an :class:`Inbox` (see the module doc)."""

    def __init__(self, *, relay: Relay | None = None, inbox: Inbox | None = None) -> None:
        self.relay = relay
        self.inbox = inbox

    def collect(self) -> Iterable[Metric]:
        """The metric families, read now."""
        if self.relay is not None:
            table, stats = self.relay.tables.outbox, self.relay.stats()
            for name, doc, value in (
                ("backlog", "Outbox rows committed and not yet sent.", stats.backlog),
                ("oldest_age_seconds", "Age of the oldest outbox row.", stats.oldest_age),
                ("leader", "1 if this relay is the one sending.", int(stats.leader)),
            ):
                gauge = GaugeMetricFamily(f"eventcore_outbox_{name}", doc, labels=["table"])
                gauge.add_metric([table], float("nan") if value is None else float(value))
                yield gauge
            for name, doc in _RELAY_COUNTERS:
                counter = CounterMetricFamily(f"eventcore_outbox_{name}", doc, labels=["table"])
                counter.add_metric([table], getattr(stats, name))
                yield counter
        if self.inbox is not None:
            table, figures = self.inbox.tables.inbox, self.inbox.stats()
            for name, doc in _INBOX_COUNTERS:
                counter = CounterMetricFamily(f"eventcore_inbox_{name}", doc, labels=["table"])
                counter.add_metric([table], getattr(figures, name))
                yield counter
