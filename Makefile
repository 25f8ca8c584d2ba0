.PHONY: help install fmt lint test test-pg migrate serve worker bench

VENV ?= .venv
BIN = $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## a virtual environment with the test extras
	python3 -m venv $(VENV) && $(BIN)/pip install -e '.[test,browser]'

fmt:  ## format and fix lint
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

lint:  ## lint and strict types
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

test:  ## the test suite on SQLite
	$(BIN)/pytest

test-pg:  ## the test suite on PostgreSQL
	PASSHOUSE_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest

migrate:  ## apply database migrations
	$(BIN)/passhouse migrate

serve:  ## run the server (dev mode on SQLite by default)
	$(BIN)/passhouse serve

worker:  ## run a standalone push worker
	$(BIN)/passhouse worker

bench:  ## the benchmarks (see bench/README.md)
	$(BIN)/python bench/bench_pkpass.py && $(BIN)/python bench/bench_web.py --large 0 && $(BIN)/python bench/bench_push.py
