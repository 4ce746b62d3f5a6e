# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB := .flowrun/support.db

.PHONY: demo test lint bench

$(BIN)/flowrun: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/flowrun
	$(BIN)/python -m tools.seed --db $(DEMO_DB) --reset
	FLOWRUN_SUPPORT_DB=$(DEMO_DB) $(BIN)/flowrun validate specs/support_refund.yaml
	FLOWRUN_SUPPORT_DB=$(DEMO_DB) $(BIN)/flowrun execute specs/support_refund.yaml \
		--input examples/inputs/refund_granted.json \
		--responses examples/responses/refund_granted.jsonl

test: $(BIN)/flowrun
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(BIN)/flowrun
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/flowrun
	$(BIN)/python tests/bench/bench_core.py
