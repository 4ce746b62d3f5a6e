"""Fuzzing: mutated specs, inputs and responses through load → compile → execute.

Whatever the mutant, flowrun answers with a diagnostic (`FlowrunError` and its kinds) or a run
outcome, never another exception. CI runs a bounded number of examples
(`FLOWRUN_FUZZ_EXAMPLES`, default 150 per test); set it to thousands for a long local run.
A mutant that ever crashed is kept in tests/fuzz/crashes/ and replayed by
`test_kept_crashes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import FlowrunError
from runner.plan.compile import compile_plan
from runner.spec import load_spec_text

ROOT = Path(__file__).resolve().parents[2]
CRASHES = Path(__file__).resolve().parent / "crashes"
SEEDS = sorted([*ROOT.glob("specs/*.yaml"), *(ROOT / "tests" / "fixtures" / "ok").glob("*.yaml")])
SEED_TEXT = {p: p.read_text(encoding="utf-8") for p in SEEDS}
EXAMPLES = int(os.environ.get("FLOWRUN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FLOWRUN_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# values a mutation puts where a spec had something else: every YAML type, and strings that
# look like what specs hold (CEL, bindings, durations, node ids, Jinja)
ODD_STRINGS = [
    "",
    "${{",
    "${{ nodes.x.output }}",
    "${{ inputs }}",
    "nodes.intake.output.missing",
    "1 +",
    "size(inputs) > 0",
    "matches('[', 'x')",
    "'a' < 1",
    "{% if %}",
    "{{ x",
    "30x",
    "-1s",
    "1e309",
    "$ref",
    "#/$defs/none",
    "intake",
    "tools.payments:nope",
    "a" * 300,
    "\u0000",
    "ü",
]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=20),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module", autouse=True)
def _no_reference_databases(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The reference tools find no database (their nodes fail): a mutant touches no real data."""
    empty = tmp_path_factory.mktemp("fuzz-dbs")
    with pytest.MonkeyPatch.context() as mp:
        for var in (
            "FLOWRUN_SUPPORT_DB",
            "FLOWRUN_ITOPS_DB",
            "FLOWRUN_CRM_DB",
            "FLOWRUN_FINANCE_DB",
        ):
            mp.setenv(var, str(empty / f"{var.lower()}.db"))
        yield


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """A seed spec with a few mutations: values replaced, keys deleted, lines cut or doubled."""
    seed = draw(st.sampled_from(SEEDS))
    text = SEED_TEXT[seed]
    if draw(st.booleans()):
        data = yaml.safe_load(text)
        for _ in range(draw(st.integers(1, 4))):
            paths = _paths(data)
            path = draw(st.sampled_from(paths))
            delete = bool(path) and draw(st.booleans())
            data = _set(data, path, draw(VALUES), delete)
        with contextlib.suppress(yaml.YAMLError, ValueError):
            text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    else:
        lines = text.splitlines()
        for _ in range(draw(st.integers(1, 3))):
            if not lines:
                break
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(["cut", "double", "indent", "dedent", "garble"]))
            if op == "cut":
                del lines[i]
            elif op == "double":
                lines.insert(i, lines[i])
            elif op == "indent":
                lines[i] = "  " + lines[i]
            elif op == "dedent":
                lines[i] = lines[i].lstrip()
            else:
                j = draw(st.integers(0, len(lines[i])))
                lines[i] = lines[i][:j] + draw(st.sampled_from(ODD_STRINGS)) + lines[i][j:]
        text = "\n".join(lines) + "\n"
    return f"{seed.parent}/fuzzed.yaml\n{text}"


def _compile(case: str) -> Any:
    where, _, text = case.partition("\n")
    try:
        return compile_plan(load_spec_text(text, where))
    except FlowrunError:
        return None


def _keep(case: str, what: str) -> None:
    CRASHES.mkdir(exist_ok=True)
    name = f"{what}-{abs(hash(case)) % 10**10}.txt"
    (CRASHES / name).write_text(case, encoding="utf-8")


@FUZZ
@given(mutated_specs())
def test_mutated_specs_compile_or_diagnose(case: str) -> None:
    try:
        _compile(case)
    except Exception:
        _keep(case, "compile")
        raise


@FUZZ
@given(mutated_specs(), VALUES)
def test_compiled_mutants_run_to_an_outcome(case: str, inputs: Any) -> None:
    """What compiles also runs (dry, no responses, no store) to an outcome or a usage error."""
    from runner.engine.run import check_inputs, execute
    from runner.models.responses import RecordedResponses

    plan = _compile(case)
    if plan is None:
        return
    try:
        checked = check_inputs(plan, inputs if isinstance(inputs, dict) else {"x": inputs})
    except FlowrunError:
        return
    try:
        # an empty recording serves every model call: a call fails its node, none goes out
        nothing = RecordedResponses(Path("fuzz.jsonl"), ())
        result = asyncio.run(
            asyncio.wait_for(execute(plan, checked, responses=nothing), timeout=60)
        )
    except FlowrunError:
        return
    except Exception:
        _keep(case + "\n#inputs " + json.dumps(inputs, default=str), "execute")
        raise
    assert result.status in (
        "succeeded",
        "failed",
        "escalated",
        "budget_exceeded",
        "denied",
        "waiting",
        "killed",
    )


@pytest.mark.parametrize(
    "path", sorted(CRASHES.glob("*.txt")) if CRASHES.exists() else [], ids=lambda p: p.stem
)
def test_kept_crashes(path: Path) -> None:
    """Every mutant that once crashed now compiles or diagnoses."""
    case = path.read_text(encoding="utf-8").split("\n#inputs ", 1)[0]
    _compile(case)
