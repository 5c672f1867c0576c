# Quickstart: `make run` (sample data + Dagster UI and daemon) and `make test` (lint + tests).
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)
AH_LANDING_DIR ?= data/landing
export AH_LANDING_DIR
# A run over a range of hours records its planned materializations once per asset, not once per
# asset and hour: the first run over the sample (720 hours) would otherwise spend minutes
# writing 26,640 events to Dagster's SQLite storage before it starts.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1

.PHONY: run test lint format sample bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/account-hierarchy sample --if-empty
	$(BIN)/dg dev

# The suite's tests run on TEST_WORKERS processes (pytest-xdist), each test file on one of them,
# so that a file's module fixtures (a Spark session, the engines' runs) are built once.
TEST_WORKERS ?= 2
test: $(BIN)/.installed lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

sample: $(BIN)/.installed
	$(BIN)/account-hierarchy sample

BENCH_EVENTS ?= 1000000
BENCH_HOURS ?= 720
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks --events $(BENCH_EVENTS) --backfill-hours $(BENCH_HOURS)

clean:
	rm -rf $(VENV) data/warehouse.duckdb data/warehouse.duckdb.wal
