#!/bin/sh
# Every benchmark, flowrun vs LangGraph side by side on the same shapes, as one table.
#
#   tests/bench/run.sh [--small] [--repeat N] [--json]
#
# LangGraph is never a dependency of flowrun: it is installed only into the benchmark venv
# ($BENCH_VENV, default .bench-venv), created here on first use with `python3 -m venv` and
# `pip install -e . langgraph pyinstrument` from PyPI (pyinstrument is for profiling:
# `.bench-venv/bin/pyinstrument tests/bench/bench_langgraph.py --small --no-langgraph`).
set -eu
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
VENV=${BENCH_VENV:-.bench-venv}
LANGGRAPH=${LANGGRAPH:-langgraph==1.2.24}
if ! "$VENV/bin/python" -c "import langgraph, runner, pyinstrument" 2>/dev/null; then
    echo "creating the benchmark venv $VENV (flowrun + $LANGGRAPH, from PyPI)..." >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e . "$LANGGRAPH" pyinstrument
fi
exec "$VENV/bin/python" tests/bench/bench_langgraph.py "$@"
