# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-nats demo-redis demo-rabbitmq docs docs-serve fuzz soak test lint typecheck pytest perf-guard perf-guard-update contract bench bench-quick bench-profile bench-wire bench-nats bench-redis bench-rabbitmq bench-outbox clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[demo]" --group dev
	touch $(STAMP)

# `make demo SECONDS=60` runs the publishers longer (default 6); in a terminal the
# dashboard stays up after the summary until Ctrl-C.
SECONDS ?= 6
demo: $(STAMP)
	$(BIN)/python -m eventcore demo --seconds $(SECONDS)

# Scale-out on NATS JetStream: a FastAPI producer, two workers sharing the load (a
# private nats-server is started when none answers on 127.0.0.1:4222).
demo-nats: $(STAMP)
	$(BIN)/python -m examples.nats_scaleout

# The same on Redis Streams (the Redis at 127.0.0.1:6379, or EVENTCORE_REDIS_URL; a
# private redis-server is started when none answers).
demo-redis: $(STAMP)
	$(BIN)/python -m examples.redis_scaleout

# The documentation site (mkdocs-material, offline): site/index.html. Warnings fail it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same, served with live reload on http://127.0.0.1:8000/
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# Scale-out on RabbitMQ: one publisher, two workers of one service sharing the load
# (needs RabbitMQ at EVENTCORE_RABBITMQ_URL or 127.0.0.1:5672).
demo-rabbitmq: $(STAMP)
	$(BIN)/python -m examples.rabbitmq_demo

test: lint typecheck pytest perf-guard

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite mostly waits (broker round trips, private servers starting, sleeps), so it
# runs on PYTEST_WORKERS pytest-xdist workers; tests marked `xdist_group` share one
# worker (`--dist loadgroup`). `make pytest PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 3
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Instructions per event of fixed workloads under callgrind, against the budgets in
# bench/perf-budgets.json (fails > 5 % over; skips with a message without valgrind).
perf-guard: $(STAMP)
	$(BIN)/python -m bench.perf_guard

# Re-baseline: write the measured figures as the budgets (commit them with the reason).
perf-guard-update: $(STAMP)
	$(BIN)/python -m bench.perf_guard --update

# The long hypothesis profile of the contract suite (tests/contract).
contract: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/contract -m contract --timeout=0 --hypothesis-show-statistics -q

# Benchmarks (issue 6): eventcore beside bare asyncio/anyio loops and peer libraries.
# The peers are bench-only dependencies: the `bench` dependency group.
$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --group bench
	touch $@

# Whole run (< 10 min on 2 cores): writes bench/RESULTS.md, bench/results.png, bench/out/*.json.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run

# Fewer events and rounds (< 1 min): writes into bench/out/ only.
bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run --quick

# cProfile of eventcore's hot path: bench/out/profile-*.txt.
bench-profile: $(VENV)/.bench-installed
	$(BIN)/python -m bench.profile

# The wire codec beside raw msgspec and raw pydantic (< 2 min): bench/out/wire.json.
bench-wire: $(STAMP)
	$(BIN)/python -m bench.wire

# The NATS JetStream transport beside raw nats-py and FastStream (issue 12, < 2 min;
# needs a NATS server with JetStream, EVENTCORE_NATS_URL or 127.0.0.1:4222):
# bench/out/nats.json, cProfile reports in bench/out/nats-profile-*.txt.
bench-nats: $(VENV)/.bench-installed
	$(BIN)/python -m bench.nats_transport --profile
	$(BIN)/python -m bench.service nats --profile

# The Redis Streams transport beside raw redis-py and FastStream (< 1 min; needs the
# Redis at 127.0.0.1:6379 or EVENTCORE_REDIS_URL): bench/out/redis.json.
bench-redis: $(VENV)/.bench-installed
	$(BIN)/python -m bench.redis_transport
	$(BIN)/python -m bench.service redis --profile

# Coverage-guided fuzzing under atheris (fuzz/): FUZZ_SECONDS for all targets together
# (default 10 min); new inputs and crashes in fuzz/out/, the figures in fuzz/out/summary.json.
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(BIN)/python -m fuzz --total $(FUZZ_SECONDS)

# The demo's service on memory, NATS and Redis (private servers) under scheduled faults
# for MINUTES (default 2), sampling the process each second; fails on growth, a lost
# event or a broken counter identity. Report and plot in soak/out/.
MINUTES ?= 2
SOAK_OUT ?= soak/out
$(VENV)/.soak-installed: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --group soak
	touch $@

soak: $(VENV)/.soak-installed
	$(BIN)/python -m soak --minutes $(MINUTES) --out $(SOAK_OUT)

# The RabbitMQ transport beside raw aio-pika and FastStream's RabbitBroker, publish +
# consume in one process (a few minutes; a private RabbitMQ node, or EVENTCORE_RABBITMQ_URL):
# bench/out/rabbitmq.json, cProfile reports in bench/out/rabbitmq-profile-*.txt.
bench-rabbitmq: $(VENV)/.bench-installed
	$(BIN)/python -m bench.rabbitmq_transport --profile

# The transactional outbox beside a direct NATS publish (issue 22, < 2 min; needs
# PostgreSQL (EVENTCORE_PG_DSN or 127.0.0.1:5432 db test) and NATS with JetStream):
# bench/out/outbox.json; --profile adds bench/out/outbox-profile-relay.txt.
bench-outbox: $(STAMP)
	$(BIN)/python -m bench.outbox

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build dist site
