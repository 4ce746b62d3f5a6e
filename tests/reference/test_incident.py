"""The incident-triage reference workflow end to end: its tools on a real seeded SQLite file, every
example through real `flowrun` processes on recorded answers, its evals and policy cases, and
one run on the real local model."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.local_model.conftest import gguf, local_extra  # noqa: F401  (fixtures)
from tests.local_model.conftest import run_flowrun as run_local
from tools.itops import ITOPS, incidents, inventory, remediation, runbooks
from tools.itops.seed import FREEZES, HOSTS, INCIDENTS, RUNBOOKS, SERVICES, seed

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "incident_triage.yaml"
EXAMPLES = REPO / "examples"
EVALS = EXAMPLES / "evals" / "incident_triage"
BASELINE = EXAMPLES / "evals" / "baseline.incident_triage.json"
POLICY_CASES = EXAMPLES / "policies" / "incident_triage.cases.yaml"
_SCRIPT = Path(sys.executable).parent / "flowrun"
FLOWRUN: tuple[str, ...] = (
    (str(_SCRIPT),) if _SCRIPT.is_file() else (sys.executable, "-m", "runner.cli")
)
TABLES = ("services", "hosts", "change_freezes", "incidents", "runbooks", "changes", "timeline")
SCOPES = "itops:remediate"

# example case -> (expected exit code, expected status)
CASES: dict[str, tuple[int, str]] = {
    "incident_restart_auto": (0, "succeeded"),
    "incident_malformed_output": (0, "succeeded"),
    "incident_rollback_approval": (6, "waiting"),
    "incident_no_runbook": (3, "escalated"),
    "incident_over_blast_radius": (3, "escalated"),
}
DRY = "incident_restart_auto"  # also run without --live


# --- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """What one flowrun process did: exit code and both streams, kept apart."""

    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        head = f"flowrun {' '.join(self.args)} -> {self.rc}"
        return f"{head}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"

    def json(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"stdout is not JSON ({e}):\n{self}")
        return data


def _env(db: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FLOWRUN_DEBUG", ITOPS.env_var}}
    env["PYTHONPATH"] = str(REPO)
    if db is not None:
        env[ITOPS.env_var] = str(db)
    return env


def flowrun(*args: str | Path, cwd: Path, db: Path | None = None, timeout: float = 600) -> Proc:
    """Run the real `flowrun` command to completion, pointed at one itops database."""
    argv = tuple(str(a) for a in args)
    cp = subprocess.run(
        [*FLOWRUN, *argv],
        cwd=cwd,
        env=_env(db),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Proc(argv, cp.returncode, cp.stdout, cp.stderr)


def seed_cli(path: Path) -> Path:
    """Seed the way a user does: `python -m tools.itops.seed --db PATH --reset`."""
    cp = subprocess.run(
        [sys.executable, "-m", "tools.itops.seed", "--db", str(path), "--reset"],
        cwd=REPO,
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    assert "14 incidents" in cp.stdout, cp.stdout
    return path


def rows(db: Path, sql: str, *params: object) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, to prove a run changed nothing (or exactly one thing)."""
    return {t: rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in TABLES}


def host(db: Path, name: str) -> dict[str, Any]:
    return rows(db, "SELECT * FROM hosts WHERE host = ?", name)[0]


def diff_tables(before: dict[str, list[dict[str, Any]]], after: dict[str, Any]) -> set[str]:
    return {t for t in TABLES if before[t] != after[t]}


# --- the tools, in-process, on a real seeded file ---------------------------------------------


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "itops.db"
    monkeypatch.setenv(ITOPS.env_var, str(path))
    seed(path)
    return path


def _targets(*names: str) -> list[inventory.Host]:
    found: dict[str, inventory.Host] = {}
    for svc in {h[1] for h in HOSTS}:
        for h in inventory.get_service(svc)["hosts"]:
            found[h["host"]] = h
    return [found[n] for n in names]


def _remediate(**overrides: Any) -> remediation.Change:
    args: dict[str, Any] = {
        "incident_id": "INC-2001",
        "service": "checkout",
        "runbook_id": "RB-101",
        "action": "restart_service",
        "targets": _targets("checkout-web-03"),
        "instances": 0,
        "approved_by": None,
        "freeze": None,
        "idempotency_key": "remediate:INC-2001:restart_service",
    }
    args.update(overrides)
    return remediation.remediate(**args)


def test_seed_is_idempotent_and_reset_clears_writes(db: Path) -> None:
    first = {t: len(r) for t, r in snapshot(db).items()}
    assert first == {
        "services": len(SERVICES),
        "hosts": len(HOSTS),
        "change_freezes": len(FREEZES),
        "incidents": len(INCIDENTS),
        "runbooks": len(RUNBOOKS),
        "changes": 0,
        "timeline": 0,
    }
    _remediate()
    seed(db)  # again, without reset: keeps the change
    assert len(snapshot(db)["changes"]) == 1
    seed(db, reset=True)
    assert {t: len(r) for t, r in snapshot(db).items()} == first


def test_unseeded_database_names_the_seed_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ITOPS.env_var, str(tmp_path / "nothing.db"))
    with pytest.raises(RuntimeError, match=r"not seeded; run: python -m tools\.itops\.seed"):
        incidents.get_incident("INC-2001")
    assert not (tmp_path / "nothing.db").exists()


def test_freeze_windows_come_from_the_data(db: Path) -> None:
    frozen = inventory.get_service("payments")["freeze"]
    assert frozen is not None and frozen["freeze_id"] == "FRZ-301"
    assert inventory.get_service("notifications")["freeze"] is None  # FRZ-302 is over
    assert inventory.get_service("checkout")["freeze"] is None  # FRZ-303 has not started
    auth = inventory.get_service("auth")
    assert [h["host"] for h in auth["hosts"] if h["protected"]] == ["auth-db-01"]


def test_runbook_lookup_never_crosses_services(db: Path) -> None:
    hit = runbooks.find_runbook("reporting", "disk")
    assert hit["found"] and hit["runbook_id"] == "RB-105"
    assert hit["allowed_actions"] == ["clear_disk", "restart_service"]
    miss = runbooks.find_runbook("checkout", "disk")
    assert not miss["found"] and miss["allowed_actions"] == []


def test_restart_applies_once_per_key(db: Path) -> None:
    first = _remediate()
    again = _remediate()
    assert again["change_id"] == first["change_id"]
    assert first["before"] == {"checkout-web-03": {"status": "degraded", "restarts": 0}}
    assert host(db, "checkout-web-03")["restarts"] == 1
    assert len(remediation.list_changes("INC-2001")) == 1
    with pytest.raises(ValueError, match="already used for restart_service"):
        _remediate(action="clear_disk")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"targets": ["checkout-web-03", "auth-01"]},
            "host 'auth-01' belongs to service 'auth', not 'checkout'",
        ),
        ({"targets": ["checkout-web-01", "checkout-web-02", "checkout-web-03"]}, "blast radius"),
        ({"action": "clear_disk"}, "runbook 'RB-101' does not allow 'clear_disk'"),
        ({"runbook_id": "RB-105"}, "runbook 'RB-105' is for service 'reporting'"),
        ({"action": "scale_out", "targets": [], "instances": 5}, "exceeds its limit of 8"),
        ({"incident_id": "INC-2013", "targets": ["checkout-web-02"]}, "is resolved, not open"),
        (
            {
                "incident_id": "INC-2002",
                "runbook_id": "RB-102",
                "action": "rollback_deploy",
                "targets": ["checkout-web-01"],
            },
            "rollback_deploy needs a named approver",
        ),
        (
            {
                "incident_id": "INC-2011",
                "service": "auth",
                "runbook_id": "RB-109",
                "targets": ["auth-db-01"],
            },
            "host 'auth-db-01' is protected",
        ),
        (
            {
                "incident_id": "INC-2005",
                "service": "payments",
                "runbook_id": "RB-106",
                "targets": ["payments-api-01"],
            },
            "change freeze FRZ-301 is in force",
        ),
        (
            {
                "incident_id": "INC-2005",
                "service": "payments",
                "runbook_id": "RB-106",
                "targets": ["payments-api-01"],
                "approved_by": "lead@sre.example",
            },
            "did not acknowledge it",
        ),
    ],
)
def test_remediate_refuses_outside_the_envelope(
    db: Path, overrides: dict[str, Any], problem: str
) -> None:
    if isinstance(overrides.get("targets"), list) and all(
        isinstance(t, str) for t in overrides["targets"]
    ):
        overrides = {**overrides, "targets": _targets(*overrides["targets"])}
    before = snapshot(db)
    with pytest.raises(ValueError, match="remediation refused") as e:
        _remediate(idempotency_key=None, **overrides)
    assert problem in str(e.value)
    assert snapshot(db) == before
    preview = remediation.preview_remediation(
        **{
            "incident_id": "INC-2001",
            "service": "checkout",
            "runbook_id": "RB-101",
            "action": "restart_service",
            "targets": _targets("checkout-web-03"),
            "instances": 0,
            "approved_by": None,
            "freeze": None,
            **overrides,
        }
    )
    assert not preview["valid"] and any(problem in p for p in preview["problems"])


def test_freeze_change_with_approver_and_acknowledgement_applies(db: Path) -> None:
    freeze = inventory.get_service("payments")["freeze"]
    change = _remediate(
        incident_id="INC-2005",
        service="payments",
        runbook_id="RB-106",
        targets=_targets("payments-api-01"),
        approved_by="lead@sre.example",
        freeze=freeze,
        idempotency_key="k1",
    )
    assert change["freeze_id"] == "FRZ-301" and change["approved_by"] == "lead@sre.example"


def test_preview_shows_the_change_remediate_makes_and_writes_nothing(db: Path) -> None:
    before = snapshot(db)
    planned = remediation.plan_remediation(
        "INC-2003", "search", "RB-103", "scale_out", [], 2, None, None, "remediate:x"
    )
    assert snapshot(db) == before
    change = planned["change"]
    assert isinstance(change, dict) and change["valid"] is True
    applied = _remediate(
        incident_id="INC-2003",
        service="search",
        runbook_id="RB-103",
        action="scale_out",
        targets=[],
        instances=2,
        idempotency_key="remediate:x",
    )
    assert (applied["before"], applied["after"]) == (change["before"], change["after"])
    assert planned["result"]["change_id"] == applied["change_id"]  # type: ignore[index]


def test_compensation_reverts_what_can_be_reverted(db: Path) -> None:
    scaled = _remediate(
        incident_id="INC-2003",
        service="search",
        runbook_id="RB-103",
        action="scale_out",
        targets=[],
        instances=2,
        idempotency_key="s",
    )
    assert rows(db, "SELECT instances FROM services WHERE service = 'search'")[0]["instances"] == 5
    undone = remediation.revert_remediation(scaled["change_id"])
    assert undone["status"] == "reverted"
    assert rows(db, "SELECT instances FROM services WHERE service = 'search'")[0]["instances"] == 3
    assert remediation.revert_remediation(scaled["change_id"])["note"] == "already reverted"
    assert rows(db, "SELECT instances FROM services WHERE service = 'search'")[0]["instances"] == 3
    restarted = _remediate()
    kept = remediation.revert_remediation(restarted["change_id"])
    assert kept["status"] == "applied" and "cannot be undone" in kept["note"]


def test_timeline_entries_dedupe_by_key(db: Path) -> None:
    a = incidents.add_timeline_entry("INC-2001", "restarted", "k")
    b = incidents.add_timeline_entry("INC-2001", "restarted", "k")
    assert a == b and len(incidents.list_timeline("INC-2001")) == 1
    with pytest.raises(ValueError, match="already used on incident"):
        incidents.add_timeline_entry("INC-2002", "x", "k")
    with pytest.raises(ValueError, match="must not be empty"):
        incidents.add_timeline_entry("INC-2001", "  ")


# --- the workflow through the real CLI --------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """One example run, the database it ran on, its store and its folder."""

    proc: Proc
    db: Path
    store: Path
    cwd: Path
    seeded: dict[str, list[dict[str, Any]]]


def _execute(case: str, base: Path, template: Path, *, live: bool) -> Ran:
    name = f"{case}-{'live' if live else 'dry'}"
    cwd = base / name
    cwd.mkdir()
    db = cwd / "itops.db"
    shutil.copyfile(template, db)
    store = cwd / "store.db"
    args: list[str | Path] = [
        "execute",
        SPEC,
        "--input",
        EXAMPLES / "inputs" / f"{case}.json",
        "--responses",
        EXAMPLES / "responses" / f"{case}.jsonl",
        "--output",
        "json",
        "--run-id",
        f"t-{name}",
        "--store",
        store,
        "--scopes",
        SCOPES,
    ]
    if live:
        args.append("--live")
    return Ran(flowrun(*args, cwd=cwd, db=db), db, store, cwd, snapshot(template))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ran]]:
    """Every example live, plus one dry run, as concurrent processes (each imports litellm)."""
    base = tmp_path_factory.mktemp("incident")
    template = seed_cli(base / "seeded.db")
    jobs = [(case, True) for case in CASES] + [(DRY, False)]
    with ThreadPoolExecutor(max_workers=3) as pool:  # 2 cores: more only thrashes
        futures = {
            f"{case}-{'live' if live else 'dry'}": pool.submit(
                _execute, case, base, template, live=live
            )
            for case, live in jobs
        }
        yield {key: f.result() for key, f in futures.items()}


def test_every_example_input_has_responses_and_a_case() -> None:
    inputs = {p.stem for p in (EXAMPLES / "inputs").glob("incident_*.json")}
    responses = {p.stem for p in (EXAMPLES / "responses").glob("incident_*.jsonl")}
    assert inputs == responses == set(CASES)


@pytest.mark.slow
def test_validate_exits_zero_with_every_profile_routed(tmp_path: Path) -> None:
    p = flowrun("validate", SPEC, "--output", "json", cwd=tmp_path)
    assert p.rc == 0, str(p)
    assert p.stderr == ""
    summary = p.json()
    assert summary["valid"] is True and summary["warnings"] == []
    assert set(summary["routes"]) == {"default", "ci", "prod", "local"}
    assert summary["routes"]["local"] == {
        "small": ["local/gemma-3-270m"],
        "strong": ["local/gemma-3-270m"],
    }
    assert summary["tools"]["remediate"] == "write"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_example_exits_with_its_outcome(runs: dict[str, Ran], case: str) -> None:
    ran = runs[f"{case}-live"]
    rc, status = CASES[case]
    data = ran.proc.json()
    assert (ran.proc.rc, data["status"]) == (rc, status), str(ran.proc)
    assert ran.proc.stderr == "", str(ran.proc)
    assert data["workflow"] == "incident-triage"
    for node in data["nodes"].values():  # every LLM answer that was used fits its schema
        if node["kind"] == "llm" and node["status"] == "succeeded":
            assert isinstance(node["output"], dict)


@pytest.mark.slow
def test_auto_restart_makes_exactly_the_intended_writes(runs: dict[str, Ran]) -> None:
    ran = runs["incident_restart_auto-live"]
    data = ran.proc.json()
    after = snapshot(ran.db)
    assert diff_tables(ran.seeded, after) == {"hosts", "changes", "timeline"}
    [change] = after["changes"]
    assert change["idempotency_key"] == "remediate:INC-2001:restart_service"
    assert json.loads(change["hosts"]) == ["checkout-web-03"]
    assert change["approved_by"] is None and change["status"] == "applied"
    assert data["outputs"]["change"]["change_id"] == change["change_id"]
    assert data["outputs"]["approved_by"] == "auto"
    changed_hosts = [
        h["host"] for h, s in zip(after["hosts"], ran.seeded["hosts"], strict=True) if h != s
    ]
    assert changed_hosts == ["checkout-web-03"]
    assert host(ran.db, "checkout-web-03")["status"] == "healthy"
    [entry] = after["timeline"]
    assert entry["incident_id"] == "INC-2001"
    assert change["change_id"] in entry["body"] and "approved by policy (auto)" in entry["body"]


@pytest.mark.slow
def test_dry_run_changes_nothing_and_shows_the_planned_change(runs: dict[str, Ran]) -> None:
    ran = runs[f"{DRY}-dry"]
    data = ran.proc.json()
    assert ran.proc.rc == 0, str(ran.proc)
    assert snapshot(ran.db) == ran.seeded
    change = data["outputs"]["change"]
    assert change["status"] == "planned"
    assert change["after"] == {"checkout-web-03": {"status": "healthy", "restarts": 1}}


@pytest.mark.slow
def test_reasked_classification_clears_only_the_target_disk(runs: dict[str, Ran]) -> None:
    cleared = runs["incident_malformed_output-live"]
    data = cleared.proc.json()
    assert data["nodes"]["classify"]["attempts"] == 2
    assert data["nodes"]["classify"]["output"]["severity"] == "SEV4"
    assert host(cleared.db, "report-worker-01")["disk_pct"] == pytest.approx(43.2)
    assert host(cleared.db, "report-worker-02")["disk_pct"] == 99.0
    assert diff_tables(cleared.seeded, snapshot(cleared.db)) == {"hosts", "changes", "timeline"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "node", "words"),
    [
        ("incident_no_runbook", "no_runbook", "no runbook covers"),
        ("incident_over_blast_radius", "verify", "blast radius"),
    ],
)
def test_escalations_write_nothing(runs: dict[str, Ran], case: str, node: str, words: str) -> None:
    ran = runs[f"{case}-live"]
    data = ran.proc.json()
    assert words in (data["reason"] or "")
    assert data["nodes"][node]["status"] == "escalated"
    assert "act" not in data["nodes"] or data["nodes"]["act"]["status"] == "skipped"
    assert snapshot(ran.db) == ran.seeded


@pytest.mark.slow
def test_rollback_waits_then_approve_completes_and_undo_reverts(runs: dict[str, Ran]) -> None:
    ran = runs["incident_rollback_approval-live"]
    assert snapshot(ran.db) == ran.seeded  # waiting: nothing changed yet
    run_id = "t-incident_rollback_approval-live"
    approved = flowrun(
        "approve", run_id, "approve", "--by", "lead@sre.example", "--store", ran.store,
        "--output", "json", cwd=ran.cwd, db=ran.db,
    )  # fmt: skip
    assert approved.rc == 0, str(approved)
    data = approved.json()
    assert data["status"] == "succeeded"
    [change] = snapshot(ran.db)["changes"]
    assert change["approved_by"] == "lead@sre.example"
    assert change["action"] == "rollback_deploy"
    versions = {h: host(ran.db, h)["version"] for h in ("checkout-web-01", "checkout-web-02")}
    assert versions == {"checkout-web-01": "2.14.0", "checkout-web-02": "2.14.0"}
    assert "approved by lead@sre.example" in snapshot(ran.db)["timeline"][0]["body"]

    undone = flowrun(
        "undo", run_id, "--store", ran.store, "--output", "json", cwd=ran.cwd, db=ran.db
    )
    assert undone.rc == 0, str(undone)
    assert host(ran.db, "checkout-web-01")["version"] == "2.14.1"
    assert snapshot(ran.db)["changes"][0]["status"] == "reverted"


@pytest.mark.slow
def test_eval_suite_passes_its_gates_and_baseline(tmp_path: Path) -> None:
    p = flowrun(
        "eval", SPEC, "--cases", EVALS, "--baseline", BASELINE, "--output", "json", cwd=tmp_path
    )
    assert p.rc == 0, str(p)
    report = p.json()
    cases = report["cases"]
    kinds = [c["kind"] for c in cases]
    assert len(cases) >= 20 and kinds.count("adversarial") >= 5
    assert all(c["passed"] for c in cases), [c["id"] for c in cases if not c["passed"]]
    assert report["metrics"]["policy_violations"] == 0


@pytest.mark.slow
def test_policy_cases_pass(tmp_path: Path) -> None:
    p = flowrun("policy", "test", SPEC, "--cases", POLICY_CASES, cwd=tmp_path)
    assert p.rc == 0, str(p)
    n = len(yaml.safe_load(POLICY_CASES.read_text(encoding="utf-8")))
    assert f"{n} passed, 0 failed" in p.stdout


# --- the real local model ---------------------------------------------------------------------


def _node_schemas() -> dict[str, Any]:
    nodes = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["nodes"]
    return {nid: node.get("output") for nid, node in nodes.items()}


@pytest.mark.local_model
def test_runs_end_to_end_on_the_local_model(gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    db = seed_cli(tmp_path / "itops.db")
    seeded = snapshot(db)
    proc = run_local(
        "execute", SPEC, "--profile", "local", "--live", "--scopes", SCOPES,
        "--input", EXAMPLES / "inputs" / "incident_restart_auto.json",
        "--store", tmp_path / "store.db", "--output", "json",
        env={ITOPS.env_var: str(db)}, timeout=900,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    # the 270M model's judgement varies: any outcome the workflow is built for is legitimate;
    # on a loaded 2-core machine the run can also hit budget.max_seconds, which must hold too
    outcomes = {"succeeded": 0, "escalated": 3, "waiting": 6, "budget_exceeded": 4}
    assert result["status"] in outcomes, proc
    assert proc.rc == outcomes[result["status"]]
    if result["status"] == "budget_exceeded":
        assert "max_seconds" in (result["reason"] or ""), proc
    assert result["profile"] == "local"
    schemas = _node_schemas()
    llm = [n for n in result["nodes"].values() if n["kind"] == "llm" and n["status"] == "succeeded"]
    assert {n["node_id"] for n in llm} >= {"classify"}
    for node in llm:
        assert node["model"] == "local/gemma-3-270m"
        assert node["usage"]["cost_usd"] == 0.0
        jsonschema.validate(node["output"], schemas[node["node_id"]])
    after = snapshot(db)
    # the envelope: at most one change, on a host of the incident's service, within its limits
    changed = diff_tables(seeded, after)
    assert changed <= {"hosts", "services", "changes", "timeline"}
    assert len(after["changes"]) <= 1
    if result["status"] == "succeeded":
        [change] = after["changes"]
        assert change["incident_id"] == "INC-2001" and change["service"] == "checkout"
        assert change["action"] in ("restart_service", "scale_out")  # RB-101 allows only these
        targets = json.loads(change["hosts"])
        assert len(targets) <= 2 and all(t.startswith("checkout-web-") for t in targets)
        assert len(after["timeline"]) == 1
    else:
        assert after["changes"] == [] and after["timeline"] == []
        assert after == seeded
