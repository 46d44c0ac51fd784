"""Integrations with web frameworks and observability tools, one module each.

Each module imports its optional dependency itself, so ``import eventcore`` never
needs one of them; install the matching extra to use a module:

- ``eventcore.integrations.fastapi`` (extra ``fastapi``): a lifespan and a
  ``Depends`` getter, for FastAPI and plain Starlette
- ``eventcore.integrations.aiohttp`` (extra ``aiohttp``): ``setup(app, bus)``
  through ``cleanup_ctx``, a typed ``AppKey``, a getter
- ``eventcore.integrations.prometheus`` (extra ``prometheus``): per-type
  counters and gauges, handler duration and queue wait histograms
- ``eventcore.integrations.opentelemetry`` (extra ``otel``): a span per handler
  call, a child of the publisher's span, and a publish span
- ``eventcore.integrations.logging`` (no extra): the event type and id on every
  log record written while a handler runs
"""

__all__: list[str] = []
