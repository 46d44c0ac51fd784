"""Metrics (prometheus-client), tracing (OpenTelemetry SDK in-memory exporter), logging."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from eventcore import Dispatcher
from eventcore.integrations import logging as event_logging
from eventcore.integrations import opentelemetry as otel
from eventcore.integrations import prometheus
from eventcore.testing import capture
from examples import fastapi_app

pytestmark = pytest.mark.asyncio


@dataclass(frozen=True)
class Job:
    n: int


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_metrics_endpoint_shows_per_type_series() -> None:
    bus = Dispatcher(propagate_context=True)
    app = fastapi_app.create_app(bus, work_seconds=0)
    async with app.router.lifespan_context(app), client_for(app) as client:
        with capture(bus) as events:
            for total in (1.0, 2.0, 3.0):
                assert (await client.post("/orders", json={"total": total})).status_code == 202
            await events.settle()
        text = (await client.get("/metrics")).text
    for line in (
        'eventcore_events_accepted_total{event_type="OrderPlaced"} 3.0',
        'eventcore_events_handled_total{event_type="OrderPlaced"} 3.0',
        'eventcore_events_handled_total{event_type="StockReserved"} 3.0',
        'eventcore_events_failed_total{event_type="OrderPlaced"} 0.0',
        'eventcore_events_queued{event_type="OrderPlaced"} 0.0',
        'eventcore_events_in_flight{event_type="OrderPlaced"} 0.0',
        'eventcore_queue_wait_seconds_count{event_type="OrderPlaced"} 3.0',
        (
            'eventcore_handler_duration_seconds_count{event_type="OrderPlaced",'
            'handler="Orders.reserve_stock"} 3.0'
        ),
    ):
        assert line in text, line


async def test_queue_wait_is_observed_once_per_event() -> None:
    registry = CollectorRegistry()
    bus = Dispatcher()
    prometheus.instrument(bus, registry=registry, namespace="t")

    @bus.on(Job)
    async def first(event: Job) -> None:
        if event.n == 1:
            raise ValueError("boom")

    @bus.on(Job)
    async def second(event: Job) -> None: ...

    async with bus:
        for n in range(3):
            await bus.publish(Job(n))
    text = generate_latest(registry).decode()
    assert 't_queue_wait_seconds_count{event_type="Job"} 3.0' in text
    assert 't_handler_duration_seconds_count{event_type="Job",handler=' in text
    assert 't_events_failed_total{event_type="Job"} 1.0' in text
    assert 't_events_handled_total{event_type="Job"} 3.0' in text


def traced_app(provider: TracerProvider) -> Any:
    """The example app behind a tiny ASGI middleware that opens a SERVER span per request,
    as opentelemetry-instrumentation-asgi would."""
    bus = Dispatcher()  # instrument() turns propagate_context on
    tracing = otel.instrument(bus, provider)
    app = fastapi_app.create_app(bus, work_seconds=0)
    tracer = provider.get_tracer("test")
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

    async def traced(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER
        ):
            await app(scope, receive, send)

    return traced, app, bus, tracing


async def test_handler_span_is_a_child_of_the_request_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    asgi, app, bus, _ = traced_app(provider)
    async with app.router.lifespan_context(app), client_for(asgi) as client:
        with capture(bus) as events:
            response = await client.post("/orders", json={"total": 5.0})
            assert response.status_code == 202
            await events.settle()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request = spans["POST /orders"]
    placed = spans["process OrderPlaced"]
    reserved = spans["process StockReserved"]
    assert request.context is not None
    assert placed.context is not None
    # Same trace: request -> send OrderPlaced -> process OrderPlaced -> send
    # StockReserved -> process StockReserved (a handler span is the child of the send
    # span of its event, which is the child of whatever published it).
    send_placed, send_reserved = spans["send OrderPlaced"], spans["send StockReserved"]
    assert placed.context.trace_id == request.context.trace_id
    assert placed.parent is not None
    assert placed.parent.span_id == send_placed.context.span_id
    assert reserved.parent is not None
    assert reserved.parent.span_id == send_reserved.context.span_id
    assert placed.kind is SpanKind.CONSUMER
    assert placed.attributes is not None
    assert placed.attributes["messaging.system"] == "eventcore"
    assert placed.attributes["messaging.destination.name"] == "OrderPlaced"
    assert placed.attributes["eventcore.handler"] == "Orders.reserve_stock"
    assert placed.attributes["eventcore.attempt"] == 1
    # bus.publish itself gets a short "send" span (PRODUCER): the request's child for
    # the endpoint's publish, the handler span's child for the follow-on event.
    assert send_placed.kind is SpanKind.PRODUCER
    assert send_placed.parent is not None
    assert send_placed.parent.span_id == request.context.span_id
    assert send_reserved.parent is not None
    assert send_reserved.parent.span_id == placed.context.span_id
    assert send_placed.attributes is not None
    assert send_placed.attributes["messaging.operation.type"] == "send"
    assert send_placed.attributes["messaging.destination.name"] == "OrderPlaced"


async def test_publish_span_and_failed_handler_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = Dispatcher(propagate_context=True, on_error=lambda *args: None)
    tracing = otel.instrument(bus, provider)

    @bus.on(Job)
    async def fail(event: Job) -> None:
        raise ValueError("boom")

    async with bus:
        assert await tracing.publish(bus, Job(1))
    names = [s.name for s in exporter.get_finished_spans()]
    assert sorted(names) == ["process Job", "send Job"]  # one send span, not two
    spans = {s.name: s for s in exporter.get_finished_spans()}
    send, process = spans["send Job"], spans["process Job"]
    assert send.kind is SpanKind.PRODUCER
    assert send.context is not None
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]


async def test_instrument_turns_on_context_and_traces_bus_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = Dispatcher()
    with caplog.at_level(logging.DEBUG, "eventcore"):
        otel.instrument(bus, provider)
    assert bus.propagate_context
    assert "propagate_context" in caplog.text

    @bus.on(Job)
    async def work(event: Job) -> None: ...

    tracer = provider.get_tracer("test")
    async with bus:
        with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as request:
            assert await bus.publish(Job(1))
            bus.publish_nowait(Job(2))
        await bus.drain()
    spans = exporter.get_finished_spans()
    sends = [s for s in spans if s.name == "send Job"]
    processes = [s for s in spans if s.name == "process Job"]
    assert len(sends) == len(processes) == 2
    request_id = request.get_span_context().span_id
    for span in sends:
        assert span.parent is not None
        assert span.parent.span_id == request_id
    send_ids = {s.context.span_id for s in sends if s.context is not None}
    assert {s.parent.span_id for s in processes if s.parent is not None} == send_ids
    assert {s.kind for s in sends} == {SpanKind.PRODUCER}


async def test_instrument_can_leave_context_and_publish_spans_off() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = Dispatcher()
    otel.instrument(bus, provider, propagate_context=False, publish_spans=False)
    assert not bus.propagate_context

    @bus.on(Job)
    async def work(event: Job) -> None: ...

    async with bus:
        await bus.publish(Job(1))
    assert [s.name for s in exporter.get_finished_spans()] == ["process Job"]


async def test_log_records_carry_event_type_and_id(caplog: pytest.LogCaptureFixture) -> None:
    bus = Dispatcher()
    event_logging.instrument(bus, logging.getLogger("eventcore.test.calls"))
    log = logging.getLogger("eventcore.test.handler")
    adapter = event_logging.event_logger("eventcore.test.adapter")
    caplog.handler.addFilter(event_logging.EventContextFilter())
    secret = "card-4242"

    @bus.on(Job)
    async def work(event: Job) -> None:
        log.info("working")
        adapter.info("via adapter")
        assert event_logging.current_event() is not None

    with caplog.at_level(logging.DEBUG), capture(bus) as events:
        async with bus:
            await bus.publish(Job(7))
            await bus.publish(Job(8))
            await events.settle()
        log.info("outside")
    ids = [r.__dict__["event_id"] for r in caplog.records if r.getMessage() == "working"]
    assert len(ids) == 2
    assert ids[0] != ids[1]
    for record in caplog.records:
        if record.getMessage() in ("working", "via adapter"):
            assert record.__dict__["event_type"] == "Job"
            assert record.__dict__["event_handler"].endswith("work")
            assert record.__dict__["event_attempt"] == 1
    calls = [r for r in caplog.records if r.name == "eventcore.test.calls"]
    assert {r.getMessage().split(" ")[-1] for r in calls if "started" in r.getMessage()} == {
        "started"
    }
    assert all(
        r.__dict__["event_type"] == "Job" and isinstance(r.__dict__["event_id"], int)
        for r in calls
    )
    [outside] = [r for r in caplog.records if r.getMessage() == "outside"]
    assert outside.__dict__["event_type"] == "-"
    assert outside.__dict__["event_id"] == "-"
    assert all(secret not in r.getMessage() and "Job(n=" not in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert event_logging.current_event() is None


async def test_metrics_carry_the_broker_figures_of_routed_types() -> None:
    from collections.abc import Sequence

    from eventcore import BrokerStats

    class Silent:
        """A routed type's source that never delivers (the figures are what matter)."""

        async def fetch(self, room: int) -> Sequence[tuple[Any, Any]]:
            import anyio

            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    class ReportingTransport:
        async def send(self, event_type: type, event: Any) -> None:
            pass

        def source(self, event_type: type) -> Silent:
            return Silent()

        def broker_stats(self, event_type: type) -> BrokerStats:
            return BrokerStats(pending=7, redelivered=2, acked=40, nacked=1, dead_lettered=3)

    @dataclass
    class Routed:
        n: int

    @dataclass
    class Local:
        n: int

    bus = Dispatcher()
    bus.configure(Routed, transport=ReportingTransport())
    registry = CollectorRegistry()
    prometheus.instrument(bus, registry=registry, histograms=False)
    async with bus:
        await bus.publish(Routed(1))
        await bus.publish(Local(1))
        text = generate_latest(registry).decode()
    assert 'eventcore_broker_pending{event_type="' in text
    assert 'Routed"} 7.0' in text
    assert "eventcore_broker_acked_total" in text
    assert 'Routed"} 40.0' in text
    assert "eventcore_broker_dead_lettered_total" in text
    # an in-memory type has no broker series
    assert not [
        line
        for line in text.splitlines()
        if line.startswith("eventcore_broker") and "Local" in line
    ]
