"""Prometheus metrics for a :class:`~eventcore.Dispatcher` (prometheus-client).

::

    from prometheus_client import REGISTRY
    from eventcore.integrations.prometheus import instrument

    instrument(bus)  # or instrument(bus, registry=my_registry)

Two parts, both labelled by ``event_type``:

- :class:`DispatcherCollector` reads ``bus.stats()`` when Prometheus scrapes:
  counters ``eventcore_events_{accepted,dropped,refused,evicted,handled,failed,abandoned}_total``
  and gauges ``eventcore_events_queued`` and ``eventcore_events_in_flight``. It
  costs nothing per event.
- :class:`HandlerMetrics`, a handle middleware, observes the histograms
  ``eventcore_handler_duration_seconds`` (per type and handler) and
  ``eventcore_queue_wait_seconds`` (per type: from acceptance until its first
  handler starts). Like every handle middleware it moves the type off the
  dispatcher's inline fast path, so it costs a little per handler call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventcore import CallNext, Dispatcher, HandlerCall

__all__ = [
    "DURATION_BUCKETS",
    "DispatcherCollector",
    "HandlerMetrics",
    "instrument",
    "type_label",
]

DURATION_BUCKETS: Sequence[float] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Histogram buckets in seconds, from half a millisecond to ten seconds."""

_COUNTERS = (
    ("accepted", "Events that entered the queue of their type."),
    ("dropped", "Publishes refused under DROP_NEWEST or by a publish middleware."),
    ("refused", "Publishes that raised QueueFull or PublishTimeout."),
    ("evicted", "Accepted events evicted from the queue under DROP_OLDEST."),
    ("handled", "Accepted events whose every matching handler has run."),
    ("failed", "Handler invocations that raised."),
    ("abandoned", "Accepted events that shutdown cut off before they were handled."),
)
_GAUGES = (
    ("queued", "Accepted events waiting in the queue now."),
    ("in_flight", "Events whose handlers are running now."),
)
#: types routed through a transport that reports them (TypeStats.broker)
_BROKER_COUNTERS = (
    ("redelivered", "Messages fetched from the broker that had been delivered before."),
    ("acked", "Broker messages acknowledged (handled, or failed and dead-lettered)."),
    ("nacked", "Broker messages given back for redelivery (shutdown before handling)."),
    ("terminated", "Broker messages refused for good (undecodable, delivery limit)."),
    ("dead_lettered", "Broker messages written to the broker's dead-letter stream."),
)
_BROKER_PENDING = "Messages on the broker not yet delivered to this consumer group."


def type_label(event_type: type) -> str:
    """The default ``event_type`` label: the class's qualified name (``OrderPlaced``)."""
    return event_type.__qualname__


class DispatcherCollector(Collector):
    """A prometheus-client collector of the per-type counters and gauges of ``bus.stats()``.

    :param bus: the dispatcher to read
    :param namespace: the metric name prefix
    :param type_name: how an event class becomes the ``event_type`` label
    :param labels: constant labels for every series (``{"dispatcher": "orders"}``)
    """

    def __init__(
        self,
        bus: Dispatcher,
        *,
        namespace: str = "eventcore",
        type_name: Callable[[type], str] = type_label,
        labels: dict[str, str] | None = None,
    ) -> None:
        self._bus = bus
        self._namespace = namespace
        self._type_name = type_name
        self._const = dict(labels or {})

    def _families(
        self,
    ) -> tuple[
        list[CounterMetricFamily],
        list[GaugeMetricFamily],
        list[CounterMetricFamily],
        GaugeMetricFamily,
    ]:
        names = [*self._const, "event_type"]
        prefix = f"{self._namespace}_events"
        counters = [
            CounterMetricFamily(f"{prefix}_{field}", doc, labels=names) for field, doc in _COUNTERS
        ]
        gauges = [
            GaugeMetricFamily(f"{prefix}_{field}", doc, labels=names) for field, doc in _GAUGES
        ]
        broker = f"{self._namespace}_broker"
        broker_counters = [
            CounterMetricFamily(f"{broker}_{field}", doc, labels=names)
            for field, doc in _BROKER_COUNTERS
        ]
        pending = GaugeMetricFamily(f"{broker}_pending", _BROKER_PENDING, labels=names)
        return counters, gauges, broker_counters, pending

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (so registering does not read stats)."""
        counters, gauges, broker_counters, pending = self._families()
        return [*counters, *gauges, *broker_counters, pending]

    def collect(self) -> Iterable[Metric]:
        """Read ``bus.stats()`` once and return every family with one sample per type
        (the ``broker`` families: per type routed through a transport that reports them)."""
        counters, gauges, broker_counters, pending = self._families()
        const = list(self._const.values())
        for event_type, stats in self._bus.stats().items():
            values = [*const, self._type_name(event_type)]
            for family, (field, _) in zip(counters, _COUNTERS, strict=True):
                family.add_metric(values, getattr(stats, field))
            for gauge, (field, _) in zip(gauges, _GAUGES, strict=True):
                gauge.add_metric(values, getattr(stats, field))
            broker = stats.broker
            if broker is None:
                continue
            for family, (field, _) in zip(broker_counters, _BROKER_COUNTERS, strict=True):
                family.add_metric(values, getattr(broker, field))
            if broker.pending is not None:
                pending.add_metric(values, broker.pending)
        return [*counters, *gauges, *broker_counters, pending]


class HandlerMetrics:
    """Handle middleware observing handler duration and queue wait histograms per type.

    Install it with ``bus.use(handle=[metrics])`` (or :func:`instrument`).

    :param registry: where the histograms are registered
    :param namespace: the metric name prefix
    :param buckets: histogram buckets in seconds
    :param type_name: how an event class becomes the ``event_type`` label
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "eventcore",
        buckets: Sequence[float] = DURATION_BUCKETS,
        type_name: Callable[[type], str] = type_label,
    ) -> None:
        self._type_name = type_name
        self.duration = Histogram(
            "handler_duration_seconds",
            "Time one handler call took, by event type and handler.",
            ["event_type", "handler"],
            namespace=namespace,
            registry=registry,
            buckets=buckets,
        )
        self.queue_wait = Histogram(
            "queue_wait_seconds",
            "Time from an event's acceptance until its first handler started.",
            ["event_type"],
            namespace=namespace,
            registry=registry,
            buckets=buckets,
        )
        self._labels: dict[type, str] = {}

    def _label(self, event_type: type) -> str:
        label = self._labels.get(event_type)
        if label is None:
            label = self._labels[event_type] = self._type_name(event_type)
        return label

    async def __call__(self, event: Any, call: HandlerCall, call_next: CallNext) -> Any:
        """Time the call; observe the queue wait on the event's first handler call."""
        label = self._label(type(event))
        start = anyio.current_time()
        if call.first:  # once per event
            self.queue_wait.labels(label).observe(max(0.0, call.started_at - call.accepted_at))
        handler = call.subscription.handler
        name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        try:
            return await call_next(event)
        finally:
            self.duration.labels(label, name).observe(anyio.current_time() - start)


def instrument(
    bus: Dispatcher,
    *,
    registry: CollectorRegistry = REGISTRY,
    namespace: str = "eventcore",
    histograms: bool = True,
    type_name: Callable[[type], str] = type_label,
) -> DispatcherCollector:
    """Register a :class:`DispatcherCollector` for *bus* and (with *histograms*) install
    :class:`HandlerMetrics` as handle middleware.

    :return: the collector (``registry.unregister(collector)`` removes it)
    """
    collector = DispatcherCollector(bus, namespace=namespace, type_name=type_name)
    registry.register(collector)
    if histograms:
        bus.use(
            handle=[HandlerMetrics(registry=registry, namespace=namespace, type_name=type_name)]
        )
    return collector
