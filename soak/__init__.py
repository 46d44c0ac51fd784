"""A soak under faults (``make soak MINUTES=N``): the demo's service shape on memory, NATS
and Redis, faults on a schedule, the process sampled each second.

- ``events``: the service's event types and their settings (the demo's policies)
- ``ledger``: every accepted event must reach a handler or a dead letter, counted
- ``service``: one service process (``python -m soak.service``): feeds, handlers,
  its own faults, a sampler, the ledger of accepted events; or a bare worker
- ``trim``: RSS after ``malloc_trim(0)``, the figure the memory verdict is on
- ``verdict``: what counts as growth, a lost event or a broken identity
- ``plot``: the samples as a PNG
- ``__main__``: private brokers, the processes, the broker and worker faults, the report
"""
