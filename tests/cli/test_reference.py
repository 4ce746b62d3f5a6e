"""The reference cases end to end: real `flowrun execute` processes, SQLite, recorded answers."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import (
    EXAMPLES,
    REPO,
    SPEC,
    Proc,
    refund_rows,
    run_flowrun,
    seed_db,
    table_counts,
)

pytestmark = pytest.mark.slow  # five processes, each importing litellm (~5 s of CPU)

CASES = (
    "refund_granted",
    "refund_over_cap",
    "not_a_refund",
    "malformed_output",
    "budget_too_small",
)
# affords classify reserved at its costliest model (its fallback claude-haiku-4-5: $0.0014),
# not propose's one call on claude-sonnet ($0.0097)
TIGHT_MAX_USD = 0.003


def _case_args(case: str, fmt: str = "json") -> list[str | Path]:
    args: list[str | Path] = [
        "execute",
        SPEC,
        "--input",
        EXAMPLES / "inputs" / f"{case}.json",
        "--responses",
        EXAMPLES / "responses" / f"{case}.jsonl",
        "--output",
        fmt,
        "--run-id",
        f"t-{case}-{fmt}",
        "--live",
        "--scopes",
        "refunds:write",
    ]
    if case == "budget_too_small":
        args += ["--max-usd", str(TIGHT_MAX_USD)]
    return args


class Ran:
    """One reference run and the database it ran against."""

    def __init__(self, proc: Proc, db: Path) -> None:
        self.proc = proc
        self.db = db

    def json(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.proc.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"stdout is not JSON ({e}):\n{self.proc}")
        return data


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every reference case as its own process, started together (each pays litellm's import)."""
    base = tmp_path_factory.mktemp("reference")
    dbs = {case: seed_db(base / f"{case}.sqlite") for case in CASES}
    cwds = {case: base / f"cwd-{case}" for case in CASES}
    for d in cwds.values():
        d.mkdir()

    def one(case: str) -> Ran:
        args = _case_args(case, "json")
        return Ran(run_flowrun(*args, cwd=cwds[case], db=dbs[case]), dbs[case])

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {case: pool.submit(one, case) for case in CASES}
        return {case: f.result() for case, f in futures.items()}


def _node(data: dict[str, Any], nid: str) -> dict[str, Any]:
    node: dict[str, Any] = data["nodes"][nid]
    return node


@pytest.mark.parametrize("case", CASES)
def test_json_runs_keep_stderr_clean_and_stdout_pure_json(runs: dict[str, Ran], case: str) -> None:
    ran = runs[case]
    data = ran.json()
    assert ran.proc.stderr == "", str(ran.proc)
    assert data["workflow"] == "support-refund"
    assert data["run_id"] == f"t-{case}-json"


def test_refund_granted_issues_one_refund_of_35(runs: dict[str, Ran]) -> None:
    ran = runs["refund_granted"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["status"] == "succeeded"
    assert data["outputs"]["decision"] == "refunded"
    assert data["outputs"]["refund"]["amount_usd"] == 35.0
    rows = refund_rows(ran.db)
    assert len(rows) == 1
    assert rows[0]["amount_usd"] == 35.0
    assert rows[0]["order_id"] == "O-5001"
    assert rows[0]["status"] == "issued"
    assert rows[0]["idempotency_key"] == "refund:O-5001"
    assert rows[0]["refund_id"] == data["outputs"]["refund"]["refund_id"]
    assert data["totals"]["llm_calls"] == 2
    assert 0 < data["totals"]["cost_usd"] <= 0.05
    conn = sqlite3.connect(f"file:{ran.db}?mode=ro", uri=True)
    try:
        notes = [
            r[0] for r in conn.execute("SELECT body FROM ticket_notes WHERE ticket_id = 'T-1001'")
        ]
    finally:
        conn.close()
    assert notes == [f"refund {rows[0]['refund_id']} of 35.0 USD issued: item arrived damaged"]


def test_refund_over_cap_escalates_without_refunding(runs: dict[str, Ran]) -> None:
    ran = runs["refund_over_cap"]
    data = ran.json()
    assert ran.proc.rc == 3, str(ran.proc)
    assert data["status"] == "escalated"
    assert "$50" in (data["reason"] or "")
    assert _node(data, "verify")["status"] == "escalated"
    act = data["nodes"].get("act")
    assert act is None or act["status"] == "skipped", act
    assert refund_rows(ran.db) == []


def test_not_a_refund_answers_and_never_calls_propose(runs: dict[str, Ran]) -> None:
    ran = runs["not_a_refund"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["status"] == "succeeded"
    assert data["outputs"]["decision"] == "answered"
    assert data["outputs"]["category"] == "account"
    assert "Forgot password" in data["outputs"]["reply"]
    propose = data["nodes"].get("propose")
    assert propose is None or (
        propose["status"] == "skipped" and propose["usage"]["llm_calls"] == 0
    )
    assert _node(data, "answer")["usage"]["llm_calls"] == 1
    assert data["totals"]["llm_calls"] == 2  # classify + answer
    assert refund_rows(ran.db) == []


def test_malformed_output_is_reasked_once(runs: dict[str, Ran]) -> None:
    ran = runs["malformed_output"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["status"] == "succeeded"
    classify = _node(data, "classify")
    assert classify["attempts"] == 2
    assert classify["usage"]["llm_calls"] == 2
    assert classify["output"] == {"category": "refund", "confidence": 0.9}
    assert [r["amount_usd"] for r in refund_rows(ran.db)] == [24.99]


def test_budget_too_small_stops_before_the_unaffordable_call(runs: dict[str, Ran]) -> None:
    ran = runs["budget_too_small"]
    data = ran.json()
    assert ran.proc.rc == 4, str(ran.proc)
    assert data["status"] == "budget_exceeded"
    assert "max_usd" in (data["reason"] or "")
    assert data["totals"]["cost_usd"] <= TIGHT_MAX_USD
    assert (
        data["totals"]["llm_calls"] == 1
    )  # classify only: the recorded propose answer was not used
    propose = _node(data, "propose")
    assert propose["status"] == "budget_exceeded"
    assert propose["usage"]["llm_calls"] == 0
    assert propose["usage"]["cost_usd"] == 0
    assert "not made" in (propose["error"] or "")
    assert refund_rows(ran.db) == []
    assert table_counts(ran.db)["ticket_notes"] == 0


def test_max_usd_above_the_spec_cap_does_not_loosen_it(tmp_path: Path, fresh_db: Path) -> None:
    p = run_flowrun(
        "execute", SPEC, "--input-json", '{"ticket_id": "T-1001"}', "--max-usd", "5",
        "--responses", REPO / "examples" / "responses" / "nosuch.jsonl",
        cwd=tmp_path, db=fresh_db,
    )  # fmt: skip
    assert p.rc == 2, str(p)  # stopped at the missing responses file, after the note
    assert "--max-usd 5 is above the spec's max_usd 0.05; keeping 0.05" in p.stderr
    assert "Traceback" not in p.stderr


def test_max_usd_rejects_a_negative_cap(tmp_path: Path) -> None:
    p = run_flowrun("execute", SPEC, "--input-json", "{}", "--max-usd", "-1", cwd=tmp_path)
    assert p.rc == 2, str(p)
    assert "--max-usd" in p.stderr
    assert "Traceback" not in p.stderr
