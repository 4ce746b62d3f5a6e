"""Invoice reconciliation end to end: real `flowrun` processes, a seeded finance SQLite database,
recorded model answers, the eval suite, the policy cases, and the real local model."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.cli.conftest import REPO, Proc, run_flowrun
from tests.local_model.conftest import gguf, local_extra  # noqa: F401  (fixtures)
from tests.local_model.conftest import run_flowrun as run_local

SPEC = REPO / "specs" / "invoice_reconciliation.yaml"
EXAMPLES = REPO / "examples"
CASES_DIR = EXAMPLES / "evals" / "invoice_reconciliation"
ENV = "FLOWRUN_FINANCE_DB"
SCOPE = "recon:post"
TIMEOUT = 300  # seconds per process: generous, the CI machine is shared


def seed(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Seed the way a user does: `python -m tools.finance.seed --db PATH`."""
    return subprocess.run(
        [sys.executable, "-m", "tools.finance.seed", "--db", str(path), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def new_recons(db: Path) -> list[dict[str, Any]]:
    """Reconciliations this workflow wrote (the seeded ones are 'manual')."""
    return rows(db, "SELECT * FROM reconciliations WHERE method != 'manual' ORDER BY invoice_id")


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table a reconciliation must never change."""
    return {
        t: rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("vendors", "invoices", "payments")
    }


class Ran:
    """One `flowrun execute` of an example case and the database it ran against."""

    def __init__(self, proc: Proc, db: Path, cwd: Path, run_id: str) -> None:
        self.proc, self.db, self.cwd, self.run_id = proc, db, cwd, run_id

    def json(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.proc.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"stdout is not JSON ({e}):\n{self.proc}")
        return data

    def flowrun(self, *args: str | Path) -> Proc:
        """Another command against the same run store and database."""
        return run_flowrun(*args, cwd=self.cwd, env=self.env(), timeout=TIMEOUT)

    def env(self) -> dict[str, str]:
        """This run's database and its own run store (not the per-test one conftest sets)."""
        return {ENV: str(self.db), "FLOWRUN_STORE": str(self.cwd / "store.db")}


# run name -> (example case, live?, scopes)
RUNS: dict[str, tuple[str, bool, str | None]] = {
    "matched_dry": ("recon_matched", False, SCOPE),
    "matched_live": ("recon_matched", True, SCOPE),
    "needs_approval": ("recon_needs_approval", True, SCOPE),
    "escalated": ("recon_escalated", True, SCOPE),
    "malformed": ("recon_malformed", True, SCOPE),
    "exact_only": ("recon_exact_only", True, SCOPE),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every example case as its own process, two at a time (each pays litellm's import)."""
    base = tmp_path_factory.mktemp("recon")

    def one(name: str) -> Ran:
        case, live, scopes = RUNS[name]
        db, cwd = base / f"{name}.db", base / f"cwd-{name}"
        cwd.mkdir()
        assert seed(db).returncode == 0
        args: list[str | Path] = [
            "execute", SPEC, "--input", EXAMPLES / "inputs" / f"{case}.json",
            "--responses", EXAMPLES / "responses" / f"{case}.jsonl",
            "--output", "json", "--run-id", f"t-{name}",
        ]  # fmt: skip
        args += ["--live"] if live else []
        args += ["--scopes", scopes] if scopes else []
        ran = Ran(Proc((), 0, "", ""), db, cwd, f"t-{name}")
        ran.proc = run_flowrun(*args, cwd=cwd, env=ran.env(), timeout=TIMEOUT)
        return ran

    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores, shared
        futures = {name: pool.submit(one, name) for name in RUNS}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture
def finance_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "finance.db"
    assert seed(db).returncode == 0
    monkeypatch.setenv(ENV, str(db))
    yield db


# --- the spec, the seed, the policies, the evals ------------------------------------------


def test_spec_validates() -> None:
    p = run_flowrun("validate", SPEC, cwd=REPO)
    assert p.rc == 0, str(p)
    assert "workflow 'invoice-reconciliation'" in p.stdout
    assert "post_reconciliation (write)" in p.stdout


def test_seed_is_repeatable_and_reset_wipes_postings(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    first = seed(db)
    assert first.returncode == 0, first.stderr
    assert "6 vendors, 20 invoices, 17 payments" in first.stdout
    assert "(0 rows added)" in seed(db).stdout  # a second seed changes nothing
    conn = sqlite3.connect(db)
    conn.execute("UPDATE reconciliations SET status = 'unposted'")
    conn.commit()
    conn.close()
    again = seed(db, "--reset")
    assert again.returncode == 0 and "reset and seeded" in again.stdout
    assert [r["status"] for r in rows(db, "SELECT status FROM reconciliations")] == ["posted"] * 2


def test_tools_refuse_a_missing_database_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.finance.matching import find_candidates

    monkeypatch.setenv(ENV, str(tmp_path / "nope.db"))
    with pytest.raises(RuntimeError, match=r"python -m tools\.finance\.seed"):
        find_candidates("V-100", "2026-10")
    assert not (tmp_path / "nope.db").exists()


def test_policy_cases_pass() -> None:
    p = run_flowrun(
        "policy", "test", SPEC, "--cases",
        EXAMPLES / "policies" / "invoice_reconciliation.cases.yaml", cwd=REPO,
    )  # fmt: skip
    assert p.rc == 0, str(p)
    assert "0 failed" in p.stdout and "FAIL" not in p.stdout


@pytest.mark.slow
def test_eval_suite_passes_its_gates_and_baseline(tmp_path: Path) -> None:
    cases = [
        c for f in sorted(CASES_DIR.glob("*.yaml")) for c in yaml.safe_load(f.read_text())["cases"]
    ]
    assert len(cases) >= 20
    assert sum(c["kind"] == "adversarial" for c in cases) >= 5
    p = run_flowrun(
        "eval", SPEC, "--cases", CASES_DIR,
        "--baseline", EXAMPLES / "evals" / "baseline.invoice_reconciliation.json",
        "--output", "json", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert p.rc == 0, str(p)
    report = json.loads(p.stdout)
    assert report["passed"] is True
    assert report["metrics"]["policy_violations"] == 0
    assert len(report["runs"]) == len(cases)
    assert all(r["passed"] for r in report["runs"])


# --- the tools' own invariants (money in cents, enforced below the model) -----------------


def test_matching_rules_leave_judgement_to_the_model(finance_db: Path) -> None:
    from tools.finance.matching import find_candidates

    nw = find_candidates("V-100", "2026-10")
    assert [(p["invoice_id"], p["payment_id"]) for p in nw["exact"]] == [
        ("INV-1001", "P-5001"),
        ("INV-1002", "P-5002"),
    ]
    assert nw["ambiguous_invoice_ids"] == ["INV-1003"]  # the wire fee broke the amount
    assert nw["unmatched_invoice_ids"] == ["INV-1004"]
    adatum = find_candidates("V-600", "2026-10")  # AC-2026-10 is not read inside AC-2026-10B
    assert [p["invoice_id"] for p in adatum["exact"]] == ["INV-6003"]
    contoso = find_candidates("V-200", "2026-10")  # equal amounts, no references: ambiguous
    assert contoso["exact"] == [] and len(contoso["ambiguous"]) == 3
    with pytest.raises(ValueError, match="YYYY-MM"):
        find_candidates("V-100", "2026-%")


def test_check_reports_book_facts_and_folds_repeated_pairs(finance_db: Path) -> None:
    from tools.finance.matching import check_matches

    m = {"invoice_id": "INV-1003", "payment_id": "P-5003", "reason": "see https://x.example"}
    other = {"invoice_id": "INV-1004", "payment_id": "P-5003", "reason": "same payment"}
    out = check_matches("V-100", "2026-10", [m, m, other])
    assert [(p["invoice_id"], p["payment_id"]) for p in out["pairs"]] == [
        ("INV-1003", "P-5003"),
        ("INV-1004", "P-5003"),  # a different pair on the same payment stays, for the gate
    ]
    first = out["pairs"][0]
    assert (first["invoice_cents"], first["payment_cents"], first["difference_cents"]) == (
        240000,
        238500,
        1500,
    )
    assert first["payment_free"] and first["invoice_open"]
    assert "https" not in json.dumps(out)  # the model's words are not echoed
    assert len(out["exact"]) == 2


def _post(**over: Any) -> Any:
    from tools.finance.ledger import post_reconciliation

    args: dict[str, Any] = {
        "invoice_id": "INV-1003", "payment_id": "P-5003", "vendor_id": "V-100",
        "period": "2026-10", "invoice_cents": 240000, "difference_cents": 1500,
        "method": "proposed", "note": "wire fee", "approved_by": "",
        "idempotency_key": "recon:INV-1003:P-5003",
    }  # fmt: skip
    args.update(over)
    return post_reconciliation(**args)


def test_posting_is_idempotent_per_key_and_unpost_undoes_it(finance_db: Path) -> None:
    from tools.finance.ledger import list_reconciliations, unpost

    first = _post()
    assert _post() == first  # the same key returns the same row
    assert len([r for r in list_reconciliations("V-100") if r["method"] != "manual"]) == 1
    with pytest.raises(ValueError, match="already used"):
        _post(invoice_id="INV-1004", invoice_cents=9620, difference_cents=9620 - 238500)
    assert unpost(first["recon_id"])["status"] == "unposted"
    assert unpost(first["recon_id"])["status"] == "unposted"  # twice changes nothing


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"vendor_id": "V-400"}, "belongs to vendor 'V-100', not 'V-400'"),
        ({"period": "2026-11"}, "is in period 2026-10, not 2026-11"),
        ({"difference_cents": 0}, "do not match the books"),
        (
            {
                "invoice_id": "INV-2003",
                "payment_id": "P-5103",
                "vendor_id": "V-200",
                "invoice_cents": 800000,
                "difference_cents": 15000,
            },
            "needs an approver",
        ),
        (
            {
                "invoice_id": "INV-4001",
                "payment_id": "P-5301",
                "vendor_id": "V-400",
                "invoice_cents": 1200000,
                "difference_cents": 900000,
                "approved_by": "ceo",
            },
            "not a match",
        ),
        (
            {
                "invoice_id": "INV-3001",
                "payment_id": "P-5201",
                "vendor_id": "V-300",
                "invoice_cents": 450000,
                "difference_cents": 0,
            },
            "currencies differ",
        ),
        (
            {
                "invoice_id": "INV-3002",
                "payment_id": "P-4995",
                "vendor_id": "V-300",
                "invoice_cents": 120000,
                "difference_cents": 0,
            },
            "already matched",
        ),
    ],
)
def test_posting_refuses_what_the_books_do_not_support(
    finance_db: Path, over: dict[str, Any], problem: str
) -> None:
    before = rows(finance_db, "SELECT * FROM reconciliations")
    with pytest.raises(ValueError, match="posting refused") as e:
        _post(idempotency_key=None, **over)
    assert problem in str(e.value)
    assert rows(finance_db, "SELECT * FROM reconciliations") == before


# --- the example cases through the real CLI ------------------------------------------------


@pytest.mark.slow
def test_dry_run_plans_the_postings_and_changes_nothing(runs: dict[str, Ran]) -> None:
    ran = runs["matched_dry"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["status"] == "succeeded" and ran.proc.stderr == ""
    assert [r["status"] for r in data["outputs"]["posted"]] == ["planned"] * 3
    assert new_recons(ran.db) == []
    assert rows(ran.db, "SELECT * FROM recon_log") == []


@pytest.mark.slow
def test_live_run_posts_exactly_the_intended_matches(runs: dict[str, Ran]) -> None:
    ran = runs["matched_live"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["outputs"]["exact_matches"] == 2 and data["outputs"]["proposed_matches"] == 1
    assert data["outputs"]["open_invoices"] == ["INV-1004"]
    posted = new_recons(ran.db)
    assert [(r["invoice_id"], r["payment_id"], r["difference_cents"]) for r in posted] == [
        ("INV-1001", "P-5001", 0),
        ("INV-1002", "P-5002", 0),
        ("INV-1003", "P-5003", 1500),
    ]
    assert all(r["status"] == "posted" and r["vendor_id"] == "V-100" for r in posted)
    assert [r["idempotency_key"] for r in posted] == [
        f"recon:{r['invoice_id']}:{r['payment_id']}" for r in posted
    ]
    assert [r["approved_by"] for r in posted] == [None] * 3  # 0.6% is within tolerance
    log = rows(ran.db, "SELECT * FROM recon_log")
    assert len(log) == 1 and "still open (INV-1004)" in log[0]["summary"]
    assert data["totals"]["llm_calls"] == 1 and data["totals"]["cost_usd"] <= 0.05


@pytest.mark.slow
def test_a_difference_over_100_waits_then_approve_posts_and_undo_unposts(
    runs: dict[str, Ran],
) -> None:
    ran = runs["needs_approval"]
    data = ran.json()
    assert ran.proc.rc == 6, str(ran.proc)
    assert data["status"] == "waiting"
    assert "INV-2003 <- P-5103 (difference 15000 cents" in data["reason"]
    assert new_recons(ran.db) == []
    ok = ran.flowrun(
        "approve", ran.run_id, "approve", "--by", "controller@acme", "--output", "json"
    )
    assert ok.rc == 0, str(ok)
    posted = new_recons(ran.db)
    assert [(r["invoice_id"], r["payment_id"]) for r in posted] == [
        ("INV-2001", "P-5101"),
        ("INV-2002", "P-5102"),
        ("INV-2003", "P-5103"),
    ]
    assert {r["approved_by"] for r in posted} == {"controller@acme"}
    undo = ran.flowrun("undo", ran.run_id, "--output", "json")
    assert undo.rc == 0, str(undo)
    assert [r["status"] for r in new_recons(ran.db)] == ["unposted"] * 3


@pytest.mark.slow
def test_a_currency_mismatch_escalates_without_posting(runs: dict[str, Ran]) -> None:
    ran = runs["escalated"]
    data = ran.json()
    assert ran.proc.rc == 3, str(ran.proc)
    assert data["status"] == "escalated"
    assert data["nodes"]["verify"]["status"] == "escalated"
    assert "currency" in data["reason"]
    assert "post" not in data["nodes"] or data["nodes"]["post"]["status"] == "skipped"
    assert new_recons(ran.db) == []


@pytest.mark.slow
def test_a_malformed_answer_is_reasked_once(runs: dict[str, Ran]) -> None:
    ran = runs["malformed"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    propose = data["nodes"]["propose"]
    assert propose["attempts"] == 2 and propose["usage"]["llm_calls"] == 2
    assert [(r["invoice_id"], r["difference_cents"]) for r in new_recons(ran.db)] == [
        ("INV-5003", -1000)
    ]
    assert data["outputs"]["open_invoices"] == ["INV-5001", "INV-5002"]


@pytest.mark.slow
def test_rule_matches_alone_never_call_the_model(runs: dict[str, Ran]) -> None:
    ran = runs["exact_only"]
    data = ran.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert data["totals"]["llm_calls"] == 0 and data["totals"]["cost_usd"] == 0
    assert [(r["invoice_id"], r["method"]) for r in new_recons(ran.db)] == [("INV-2990", "exact")]


# --- the real local model -------------------------------------------------------------------

OUTCOMES = {"succeeded": 0, "escalated": 3, "waiting": 6, "budget_exceeded": 4}


@pytest.mark.local_model
@pytest.mark.slow
def test_runs_end_to_end_on_the_local_model(gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "finance.db"
    assert seed(db).returncode == 0
    before = snapshot(db)
    proc = run_local(
        "execute", SPEC, "--profile", "local", "--live", "--scopes", SCOPE,
        "--input", EXAMPLES / "inputs" / "recon_matched.json", "--output", "json",
        "--store", tmp_path / "store.db", env={ENV: str(db)}, timeout=600,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    status = result["status"]
    # the 270M model's judgement varies; any outcome the workflow is built for is legitimate,
    # and a budget stop only for wall time (a slow shared CPU), never for money or tokens
    assert status in OUTCOMES, proc
    assert proc.rc == OUTCOMES[status]
    if status == "budget_exceeded":
        assert "max_seconds" in result["reason"], proc
    assert result["profile"] == "local" and result["totals"]["cost_usd"] == 0.0
    schema = yaml.safe_load(SPEC.read_text())["nodes"]["propose"]["output"]
    propose = result["nodes"].get("propose", {})
    if propose.get("status") == "succeeded":
        assert propose["model"] == "local/gemma-3-270m"
        jsonschema.validate(propose["output"], schema)
    # the envelope: books untouched, only this vendor and period posted, within the limits
    assert snapshot(db) == before
    posted = new_recons(db)
    assert all(r["vendor_id"] == "V-100" and r["period"] == "2026-10" for r in posted)
    assert len({r["payment_id"] for r in posted}) == len(posted)
    assert all(abs(r["difference_cents"]) * 10 <= r["invoice_cents"] for r in posted)
    assert all(
        r["approved_by"]
        for r in posted
        if abs(r["difference_cents"]) > 10000
        or abs(r["difference_cents"]) * 50 > r["invoice_cents"]
    )
    if status == "succeeded":
        pairs = {(r["invoice_id"], r["payment_id"]) for r in posted}
        assert {("INV-1001", "P-5001"), ("INV-1002", "P-5002")} <= pairs
        assert pairs <= {("INV-1001", "P-5001"), ("INV-1002", "P-5002"), ("INV-1003", "P-5003")}
        assert "INV-1004" in result["outputs"]["open_invoices"]
    else:
        assert posted == []  # every stop comes before the first posting
