"""Benchmarks: eventcore beside the raw runtime and peer libraries (``make bench``).

Modules: :mod:`bench.workloads` (events, handlers, the scenario spec),
:mod:`bench.contenders` (one adapter per library or baseline),
:mod:`bench.scenarios` (the scenario list and the interleaved runner),
:mod:`bench.rss` (one overload run in a fresh process, for peak RSS),
:mod:`bench.report` (table, JSON, plot), :mod:`bench.run` (the command line),
:mod:`bench.profile` (cProfile of eventcore's hot path).
"""
