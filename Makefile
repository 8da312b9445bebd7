# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run walkthrough test test-sqlite test-postgres lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the bundled example epic driven by 4 workers with the scripted agent (SQLite)
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/run_demo.sh

## walkthrough: one story moved by hand through every gate, with the refusals
walkthrough: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/walkthrough.sh

## test: lint, types, and the whole suite on SQLite and on PostgreSQL
test: lint test-sqlite test-postgres

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/storyflow docs --check --output docs/reference

test-sqlite: $(STAMP)
	STORYFLOW_TEST_BACKEND=sqlite $(BIN)/pytest -q

test-postgres: $(STAMP)
	STORYFLOW_TEST_BACKEND=postgresql STORYFLOW_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -q

## docs: regenerate docs/reference/ from the live objects (lint fails when it is stale)
docs: $(STAMP)
	$(BIN)/storyflow docs --output docs/reference

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
