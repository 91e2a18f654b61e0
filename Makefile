# smsq — every target installs what it needs into .venv first, so each works
# as the first command on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit lint simulator migrate bench chaos chaos-quick bench-routing clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install smsq with its dev tools

demo: $(STAMP) ## run the demo on the embedded default (no services needed)
	$(BIN)/smsq demo

test: $(STAMP) ## run the test suite (integration tests need PostgreSQL and Redis)
	$(BIN)/pytest -q

test-unit: $(STAMP) ## run only the tests that need no service
	$(BIN)/pytest -q -m "not integration"

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

simulator: $(STAMP) ## serve the provider simulator on port 8025
	$(BIN)/smsq simulator --port 8025

migrate: $(STAMP) ## bring the database at SMSQ_DATABASE_URL to the newest schema
	$(BIN)/smsq db upgrade

bench: $(STAMP) ## run the benchmarks in bench/ (needs PostgreSQL and Redis; figures in docs/performance.md)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/transport.py

chaos: $(STAMP) ## every fault against the real stack, one table (~25 min; docs/reliability.md)
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

chaos-quick: $(STAMP) ## the shortened chaos runs CI does (~8 min)
	$(BIN)/python bench/chaos.py --quick $(CHAOS_ARGS)

bench-routing: $(STAMP) ## routing across accounts against the real stack (~12 min; ROUTING_ARGS=--quick: ~3)
	$(BIN)/python bench/routing.py $(ROUTING_ARGS)

clean: ## remove .venv, caches and the demo database
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache smsq.db demo-report.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
