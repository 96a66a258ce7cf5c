# Tally: `make run` starts the service on the embedded default (SQLite under ./var/),
# `make test` runs the whole suite against real PostgreSQL, NATS JetStream and Redis.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH; else the one pip installed as a module (installed on first use by `make venv`).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=

.PHONY: help venv test run lint services clean bench chaos

help:
	@echo "make run       create .venv if needed and start Tally on the embedded default"
	@echo "make test      start PostgreSQL/NATS/Redis if needed and run the whole test suite"
	@echo "make lint      ruff check, ruff format --check, mypy"
	@echo "make bench     benchmarks (TARGETS.md) written to docs/benchmarks.md (QUICK=1: ~2 min)"
	@echo "make chaos     the simulation over many seeds (CHAOS_SEEDS=1..50), then R1-R8 on the real stack"
	@echo "make services  start PostgreSQL/NATS/Redis from the installed binaries if not running"
	@echo "make venv      create or update .venv from uv.lock"
	@echo "make clean     remove caches (keeps .venv and the data in ./var)"

venv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install uv \
		|| python3 -m pip install --user --break-system-packages uv
	$(UV) sync --frozen

test: venv services
	$(UV) run --frozen pytest $(PYTEST_ARGS)

# The HTTP API on 127.0.0.1:8000 (embedded default, or the real stack from TALLY_* URLs).
run: venv
	.venv/bin/tally serve

lint: venv
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(UV) run --frozen mypy --strict clients/python/src/tally_client clients/python/scripts/generate.py

services:
	scripts/services.sh up

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

# A benchmark, not a test: figures from ../shared/spec/TARGETS.md beside raw baselines.
# The benchmarks live in benchmarks/ (not in the wheel); `tally bench` runs the same from a
# checkout. BENCH_EVENTS=100000 make bench for a quicker run; each step's knobs (e.g.
# BENCH_INGEST_BATCHES, BENCH_BILLABLE_SECONDS) are listed in docs/benchmarks.md.
# QUICK=1: every figure at a smaller size, about 2 minutes (each row says so in its size).
BENCH_EVENTS ?= 1000000
bench: venv services
	.venv/bin/python -m benchmarks --events $(BENCH_EVENTS) $(if $(QUICK),--quick)

# The deterministic simulation (TARGETS.md R9) over many seeds; `make test` runs three.
# A failing seed prints the command that replays it (`tally chaos --seed N`).
# Then the real-stack scenarios R1-R8 (`tally chaos stack`, chaos/, docs/operations.md):
# CHAOS_SCENARIOS="R3 R4" runs only those, QUICK=1 runs them small; verdicts in
# var/chaos/stack.json. Both always run; the target fails if either failed.
CHAOS_SEEDS ?= 1..50
CHAOS_STEPS ?= 1000
CHAOS_SCENARIOS ?=
chaos: venv services
	@mkdir -p var/chaos
	.venv/bin/tally chaos --seeds $(CHAOS_SEEDS) --steps $(CHAOS_STEPS) --trace var/chaos/sim-{seed}.trace; \
	sim=$$?; \
	.venv/bin/tally chaos stack --json var/chaos/stack.json $(if $(QUICK),--quick) \
		$(foreach s,$(CHAOS_SCENARIOS),--scenario $(s)); \
	stack=$$?; test $$sim -eq 0 && test $$stack -eq 0
