"""RevOps CRM hygiene end to end: the tools' invariants on a seeded SQLite database, real
`flowrun` processes on recorded answers (dry run, live writes, approval, undo), the eval suite,
the policy cases, and the real local model."""

from __future__ import annotations

import json
import shutil
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

SPEC = REPO / "specs" / "crm_hygiene.yaml"
EXAMPLES = REPO / "examples"
CASES_DIR = EXAMPLES / "evals" / "crm_hygiene"
BASELINE = EXAMPLES / "evals" / "baseline.crm_hygiene.json"
POLICY_CASES = EXAMPLES / "policies" / "crm_hygiene.cases.yaml"
ENV = "FLOWRUN_CRM_DB"
SCOPES = "crm:merge,crm:write"
TIMEOUT = 300  # seconds per process: generous, the CI machine is shared
HARBOR_AUDIT = "crm-hygiene: merged C-1002 -> C-1001, C-1004 -> C-1003; archived C-1005"

# example -> the exit code its recorded answers lead to (run live, with both scopes)
EXPECTED_RC = {
    "crm_merge_needs_approval": 6,
    "crm_archive_only": 0,
    "crm_over_limit": 3,
    "crm_malformed_output": 0,
    "crm_deal_conflict": 3,
}


def seed(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Seed the way a user does: `python -m tools.crm.seed --db PATH`."""
    return subprocess.run(
        [sys.executable, "-m", "tools.crm.seed", "--db", str(path), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def rows(db: Path, sql: str, *params: object) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


TIMES = frozenset({"created_at", "updated_at", "occurred_at", "undone_at", "restored_at"})


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Everything a hygiene run may touch, without timestamps (seeding is relative to now)."""
    tables = {
        "contacts": "contact_id",
        "deals": "deal_id",
        "activities": "activity_id",
        "merges": "merge_id",
        "archivals": "archive_id",
    }
    return {
        t: [
            {k: v for k, v in r.items() if k not in TIMES}
            for r in rows(db, f"SELECT * FROM {t} ORDER BY {key}")
        ]
        for t, key in tables.items()
    }


def audits(db: Path) -> list[str]:
    return [r["body"] for r in rows(db, "SELECT body FROM activities WHERE kind = 'audit'")]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A freshly seeded CRM database the in-process tools point at."""
    path = tmp_path / "crm.db"
    cp = seed(path)
    assert cp.returncode == 0, cp.stderr
    monkeypatch.setenv(ENV, str(path))
    return path


# --- the tools -----------------------------------------------------------------------------


def test_seed_is_repeatable_and_reset_wipes_writes(db: Path) -> None:
    from tools.crm import contacts

    again = seed(db)
    assert again.returncode == 0 and "(0 rows added)" in again.stdout, again.stdout
    contacts.archive_contact("ACC-500", "C-5002", "stale", idempotency_key="k")
    assert rows(db, "SELECT status FROM contacts WHERE contact_id = 'C-5002'") == [
        {"status": "archived"}
    ]
    reset = seed(db, "--reset")
    assert reset.returncode == 0 and reset.stdout.startswith("reset and seeded"), reset.stdout
    assert rows(db, "SELECT COUNT(*) AS n FROM archivals") == [{"n": 0}]
    assert rows(db, "SELECT status FROM contacts WHERE contact_id = 'C-5002'") == [
        {"status": "active"}
    ]


def test_tools_name_the_seed_command_when_the_database_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.crm import contacts

    monkeypatch.setenv(ENV, str(tmp_path / "nope.db"))
    with pytest.raises(RuntimeError, match=r"python -m tools\.crm\.seed"):
        contacts.list_contacts("ACC-100")
    assert not (tmp_path / "nope.db").exists()


def test_contacts_carry_the_match_keys_and_staleness_from_the_data(db: Path) -> None:
    from tools.crm import contacts

    listed = {c["contact_id"]: c for c in contacts.list_contacts("ACC-100")["contacts"]}
    assert "C-1010" not in listed and "C-1011" not in listed  # archived rows are not listed
    assert listed["C-1001"]["email_norm"] == listed["C-1002"]["email_norm"]
    assert listed["C-1001"]["phone_norm"] == listed["C-1002"]["phone_norm"] == "4155550142"
    assert listed["C-1005"]["phone_norm"] == listed["C-1008"]["phone_norm"]  # the switchboard
    assert listed["C-1005"]["name_norm"] != listed["C-1008"]["name_norm"]
    assert listed["C-1005"]["stale"] and not listed["C-1007"]["stale"]
    assert listed["C-1006"]["stale"] and listed["C-1006"]["open_deal_owners"] == ["rep.kim"]
    globex = {c["contact_id"]: c for c in contacts.list_contacts("ACC-200")["contacts"]}
    assert globex["C-2002"]["email_norm"] == globex["C-2003"]["email_norm"]  # +crm tag dropped


@pytest.mark.parametrize(
    ("account", "tenant", "survivor", "merged", "problem"),
    [
        ("ACC-100", "northwind", "C-1001", "C-2001", "belongs to another account"),
        ("ACC-100", "northwind", "C-1001", "C-7001", "belongs to another account"),
        ("ACC-100", "southwind", "C-1001", "C-1002", "belongs to tenant 'northwind'"),
        ("ACC-100", "northwind", "C-1008", "C-1005", "share neither an email nor a phone and name"),
        ("ACC-300", "southwind", "C-3005", "C-3006", "share neither an email nor a phone and name"),
        ("ACC-300", "southwind", "C-3001", "C-3002", "owned by different reps"),
        ("ACC-100", "northwind", "C-1001", "C-1010", "is archived, not active"),
        ("ACC-100", "northwind", "C-1001", "C-1001", "cannot be merged into itself"),
    ],
)
def test_merge_refuses_what_the_gate_refuses(
    db: Path, account: str, tenant: str, survivor: str, merged: str, problem: str
) -> None:
    from tools.crm import contacts

    before = snapshot(db)
    diff = contacts.diff_merge(account, survivor, merged, [])
    plan = contacts.plan_merge(account, tenant, survivor, merged, [], idempotency_key="k")
    assert plan["change"]["valid"] is False  # type: ignore[index]
    assert any(problem in p for p in plan["change"]["problems"]), plan  # type: ignore[index]
    if "tenant" not in problem:  # a diff is always drawn for the account's own tenant
        assert diff["valid"] is False
    with pytest.raises(ValueError, match=problem):
        contacts.merge_contacts(account, tenant, survivor, merged, [], idempotency_key="k")
    assert snapshot(db) == before


def test_merge_is_capped_per_run_in_the_tool_too(db: Path) -> None:
    from tools.crm import contacts

    with pytest.raises(ValueError, match="at most 3 merges per run"):
        contacts.merge_contacts(
            "ACC-400", "northwind", "C-4001", "C-4002", [], position=0, batch_size=4
        )
    assert rows(db, "SELECT COUNT(*) AS n FROM merges") == [{"n": 0}]


def test_merge_applies_once_per_key_and_unmerge_restores_both_records(db: Path) -> None:
    from tools.crm import contacts

    before = snapshot(db)
    take = ["title"]
    preview = contacts.plan_merge("ACC-100", "northwind", "C-1001", "C-1002", take)
    assert snapshot(db) == before  # a preview writes nothing
    change: Any = preview["change"]
    assert change["survivor"]["before"]["title"] == "VP Operations"
    assert change["survivor"]["after"]["title"] == "VP Operations & Fleet"
    assert change["merged"]["after"]["status"] == "archived"
    assert change["merged"]["after"]["merged_into"] == "C-1001"
    assert change["moves"] == {"activities": 2, "deals": 0}

    key = "merge:ACC-100:C-1002->C-1001"
    first = contacts.merge_contacts("ACC-100", "northwind", "C-1001", "C-1002", take, 0, 1, key)
    second = contacts.merge_contacts("ACC-100", "northwind", "C-1001", "C-1002", take, 0, 1, key)
    assert first == second
    assert first["survivor"]["title"] == "VP Operations & Fleet"
    assert rows(db, "SELECT merge_id, reason, take_from_merged FROM merges") == [
        {
            "merge_id": first["merge_id"],
            "reason": "duplicate by email",
            "take_from_merged": '["title"]',
        }
    ]
    assert rows(db, "SELECT status, merged_into FROM contacts WHERE contact_id = 'C-1002'") == [
        {"status": "archived", "merged_into": "C-1001"}
    ]
    assert rows(db, "SELECT COUNT(*) AS n FROM activities WHERE contact_id = 'C-1002'") == [
        {"n": 0}
    ]
    with pytest.raises(ValueError, match="already used"):
        contacts.merge_contacts("ACC-100", "northwind", "C-1003", "C-1004", [], 0, 1, key)

    undone = contacts.unmerge(first["merge_id"])
    assert undone["status"] == "undone"
    assert contacts.unmerge(first["merge_id"]) == undone  # undoing twice changes nothing
    after = snapshot(db)
    assert after["merges"][0]["status"] == "undone"
    assert {k: v for k, v in after.items() if k != "merges"} == {
        k: v for k, v in before.items() if k != "merges"
    }


def test_unmerge_moves_deals_back(db: Path) -> None:
    from tools.crm import contacts

    before = snapshot(db)
    merge = contacts.merge_contacts("ACC-100", "northwind", "C-1003", "C-1004", [], 0, 1, "k")
    assert merge["moved_deals"] == 1
    assert rows(db, "SELECT contact_id FROM deals WHERE deal_id = 'D-9003'") == [
        {"contact_id": "C-1003"}
    ]
    contacts.unmerge(merge["merge_id"])
    assert snapshot(db)["deals"] == before["deals"]


def test_archive_only_takes_stale_contacts_without_open_deals(db: Path) -> None:
    from tools.crm import contacts

    with pytest.raises(ValueError, match="open deals"):
        contacts.archive_contact("ACC-100", "C-1006", "stale", idempotency_key="a")
    with pytest.raises(ValueError, match="only contacts idle for 365 days"):
        contacts.archive_contact("ACC-100", "C-1007", "stale", idempotency_key="b")
    with pytest.raises(ValueError, match="another account"):
        contacts.archive_contact("ACC-100", "C-5002", "stale", idempotency_key="c")
    assert contacts.diff_archive("ACC-500", "C-5003")["valid"]  # a won deal is closed
    done = contacts.archive_contact("ACC-500", "C-5002", "no activity", idempotency_key="d")
    assert contacts.archive_contact("ACC-500", "C-5002", "again", idempotency_key="d") == done
    assert rows(db, "SELECT COUNT(*) AS n FROM archivals") == [{"n": 1}]
    restored = contacts.unarchive(done["archive_id"])
    assert restored["status"] == "restored"
    assert rows(db, "SELECT status FROM contacts WHERE contact_id = 'C-5002'") == [
        {"status": "active"}
    ]


def test_audit_entries_name_contacts_only_and_dedupe_by_key(db: Path) -> None:
    from tools.crm import activities

    with pytest.raises(ValueError, match="name contacts only"):
        activities.log_audit("ACC-100", ["C-1002 -> C-1001"], ["dana@evil.example"])
    first = activities.log_audit("ACC-100", ["C-1002 -> C-1001"], ["C-1005"], "run:log")
    again = activities.log_audit("ACC-100", ["C-1002 -> C-1001"], ["C-1005"], "run:log")
    assert first == again
    assert audits(db) == ["crm-hygiene: merged C-1002 -> C-1001; archived C-1005"]


# --- the workflow through the real CLI -------------------------------------------------------


def test_every_example_input_has_responses() -> None:
    inputs = {p.stem for p in (EXAMPLES / "inputs").glob("crm_*.json")}
    responses = {p.stem for p in (EXAMPLES / "responses").glob("crm_*.jsonl")}
    assert inputs == responses == set(EXPECTED_RC)


def test_validate_exits_zero_and_lists_every_profile(tmp_path: Path) -> None:
    p = run_flowrun("validate", SPEC, cwd=tmp_path)
    assert p.rc == 0, str(p)
    assert "workflow 'crm-hygiene'" in p.stdout
    assert "[ci]" in p.stdout and "[prod]" in p.stdout and "[local]" in p.stdout
    assert "merge_contacts (write)" in p.stdout


class Ran:
    """One example run: the process, its database and the store it was recorded in."""

    def __init__(self, proc: Proc, db: Path, cwd: Path, store: Path) -> None:
        self.proc, self.db, self.cwd, self.store = proc, db, cwd, store

    def json(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.proc.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"stdout is not JSON ({e}):\n{self.proc}")
        return data

    def flowrun(self, *args: str | Path) -> Proc:
        return run_flowrun(
            *args,
            cwd=self.cwd,
            timeout=TIMEOUT,
            env={ENV: str(self.db), "FLOWRUN_STORE": str(self.store)},
        )


RUNS = (
    *((case, True) for case in EXPECTED_RC),
    ("crm_merge_needs_approval", False),  # dry run, then approved: previews only
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, bool], Ran]]:
    """Every example as its own process, started together (each pays litellm's import)."""
    base = tmp_path_factory.mktemp("crm")

    def one(case: str, live: bool) -> Ran:
        name = f"{case}-{'live' if live else 'dry'}"
        cwd = base / name
        cwd.mkdir()
        db, store = cwd / "crm.db", cwd / "flowrun.db"
        assert seed(db).returncode == 0
        args: list[str | Path] = [
            "execute", SPEC,
            "--input", EXAMPLES / "inputs" / f"{case}.json",
            "--responses", EXAMPLES / "responses" / f"{case}.jsonl",
            "--output", "json", "--run-id", name, "--scopes", SCOPES, "--tenant", "northwind",
        ]  # fmt: skip
        if live:
            args.append("--live")
        env = {ENV: str(db), "FLOWRUN_STORE": str(store)}
        proc = run_flowrun(*args, cwd=cwd, timeout=TIMEOUT, env=env)
        return Ran(proc, db, cwd, store)

    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures = {key: pool.submit(one, *key) for key in RUNS}
        yield {key: f.result() for key, f in futures.items()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    db = tmp_path_factory.mktemp("crm-fresh") / "crm.db"
    assert seed(db).returncode == 0
    return snapshot(db)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXPECTED_RC))
def test_example_exits_with_its_outcome(runs: dict[tuple[str, bool], Ran], case: str) -> None:
    ran = runs[(case, True)]
    data = ran.json()
    assert ran.proc.rc == EXPECTED_RC[case], str(ran.proc)
    assert ran.proc.stderr == "", str(ran.proc)
    assert data["workflow"] == "crm-hygiene"
    assert 0 < data["totals"]["cost_usd"] <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("crm_over_limit", "at most 3 merges per run"),
        ("crm_deal_conflict", "open deals are owned by different reps"),
    ],
)
def test_escalations_write_nothing(
    runs: dict[tuple[str, bool], Ran], fresh: dict[str, Any], case: str, words: str
) -> None:
    ran = runs[(case, True)]
    data = ran.json()
    assert data["status"] == "escalated"
    assert words in data["reason"]
    assert data["nodes"]["verify"]["status"] == "escalated"
    assert "apply" not in data["nodes"] or data["nodes"]["apply"]["status"] != "succeeded"
    assert snapshot(ran.db) == fresh


@pytest.mark.slow
def test_archive_only_live_makes_exactly_the_intended_writes(
    runs: dict[tuple[str, bool], Ran], fresh: dict[str, Any]
) -> None:
    ran = runs[("crm_archive_only", True)]
    data = ran.json()
    assert data["status"] == "succeeded"
    assert data["nodes"]["approve"]["output"]["auto"] is True  # archivals alone need nobody
    assert [a["contact_id"] for a in data["outputs"]["archived"]] == ["C-5002", "C-5003"]
    assert rows(ran.db, "SELECT contact_id, idempotency_key, reason FROM archivals") == [
        {"contact_id": "C-5002", "idempotency_key": "archive:ACC-500:C-5002",
         "reason": "no activity for 700 days"},
        {"contact_id": "C-5003", "idempotency_key": "archive:ACC-500:C-5003",
         "reason": "no activity for 450 days"},
    ]  # fmt: skip
    assert audits(ran.db) == ["crm-hygiene: archived C-5002, C-5003"]
    now = snapshot(ran.db)
    changed = [
        c["contact_id"] for c, f in zip(now["contacts"], fresh["contacts"], strict=True) if c != f
    ]
    assert changed == ["C-5002", "C-5003"]
    assert now["merges"] == [] and now["deals"] == fresh["deals"]


@pytest.mark.slow
def test_malformed_answer_is_reasked_and_a_clean_account_writes_nothing(
    runs: dict[tuple[str, bool], Ran], fresh: dict[str, Any]
) -> None:
    data = runs[("crm_malformed_output", True)].json()
    assert data["status"] == "succeeded"
    assert data["nodes"]["propose"]["attempts"] == 2
    assert data["nodes"]["propose"]["usage"]["llm_calls"] == 2
    assert data["outputs"]["decision"] == "nothing_to_do"
    assert data["nodes"]["log"]["status"] == "skipped"
    assert snapshot(runs[("crm_malformed_output", True)].db) == fresh


@pytest.mark.slow
def test_merges_wait_then_approve_applies_them_and_undo_restores(
    runs: dict[tuple[str, bool], Ran], fresh: dict[str, Any]
) -> None:
    ran = runs[("crm_merge_needs_approval", True)]
    data = ran.json()
    assert data["status"] == "waiting"
    assert data["nodes"]["approve"]["status"] == "waiting"
    assert "apply" not in data["nodes"]
    assert snapshot(ran.db) == fresh

    inbox = ran.flowrun("inbox", "--output", "json")
    assert inbox.rc == 0, str(inbox)
    (item,) = json.loads(inbox.stdout)
    assert item["node_id"] == "approve"
    summary = item["summary"]
    assert "Merge C-1002 into C-1001 (duplicate by email" in summary
    assert 'C-1001.title: "VP Operations" -> "VP Operations & Fleet"' in summary
    assert "Archive C-1005 (no activity for 820 days)" in summary

    done = ran.flowrun("approve", data["run_id"], "approve", "--by", "lead@example.com",
                       "--output", "json")  # fmt: skip
    assert done.rc == 0, str(done)
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"]["decision"] == "cleaned"
    assert rows(ran.db, "SELECT survivor_id, merged_id, idempotency_key, status FROM merges"
                " ORDER BY merged_id") == [
        {"survivor_id": "C-1001", "merged_id": "C-1002",
         "idempotency_key": "merge:ACC-100:C-1002->C-1001", "status": "applied"},
        {"survivor_id": "C-1003", "merged_id": "C-1004",
         "idempotency_key": "merge:ACC-100:C-1004->C-1003", "status": "applied"},
    ]  # fmt: skip
    assert rows(ran.db, "SELECT contact_id, status, merged_into FROM contacts"
                " WHERE status = 'archived' AND contact_id NOT IN ('C-1010', 'C-1011')"
                " ORDER BY contact_id") == [
        {"contact_id": "C-1002", "status": "archived", "merged_into": "C-1001"},
        {"contact_id": "C-1004", "status": "archived", "merged_into": "C-1003"},
        {"contact_id": "C-1005", "status": "archived", "merged_into": None},
    ]  # fmt: skip
    assert rows(ran.db, "SELECT title FROM contacts WHERE contact_id = 'C-1001'") == [
        {"title": "VP Operations & Fleet"}
    ]
    assert audits(ran.db) == [HARBOR_AUDIT]
    assert len(snapshot(ran.db)["contacts"]) == len(fresh["contacts"])  # nothing deleted

    undo = ran.flowrun("undo", data["run_id"], "--by", "lead@example.com")
    assert undo.rc == 0, str(undo)
    restored = snapshot(ran.db)
    assert restored["contacts"] == fresh["contacts"]
    assert restored["deals"] == fresh["deals"]
    assert [m["status"] for m in restored["merges"]] == ["undone", "undone"]
    assert [a["status"] for a in restored["archivals"]] == ["restored"]
    assert audits(ran.db) == [HARBOR_AUDIT]  # the audit trail is append-only


@pytest.mark.slow
def test_dry_run_changes_nothing_and_shows_every_planned_change(
    runs: dict[tuple[str, bool], Ran], fresh: dict[str, Any]
) -> None:
    ran = runs[("crm_merge_needs_approval", False)]
    data = ran.json()
    assert data["status"] == "waiting", str(ran.proc)
    done = ran.flowrun("approve", data["run_id"], "approve", "--by", "lead", "--output", "json")
    assert done.rc == 0, str(done)
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    items = [*result["nodes"]["apply"]["items"], *result["nodes"]["archive"]["items"]]
    assert items and all(i["detail"]["dry_run"] for i in items)
    archive = result["nodes"]["archive"]["items"][0]["detail"]["planned"]
    assert (archive["contact_id"], archive["after"]["status"]) == ("C-1005", "archived")
    assert result["nodes"]["log"]["detail"]["planned"]["body"] == HARBOR_AUDIT
    changes = [i["detail"]["planned"] for i in result["nodes"]["apply"]["items"]]
    assert [(c["survivor_id"], c["merged_id"], c["valid"]) for c in changes] == [
        ("C-1001", "C-1002", True),
        ("C-1003", "C-1004", True),
    ]
    assert changes[0]["survivor"]["after"]["title"] == "VP Operations & Fleet"
    merged = changes[1]["merged"]
    assert merged["after"] == {**merged["before"], "status": "archived", "merged_into": "C-1003"}
    assert snapshot(ran.db) == fresh


@pytest.mark.slow
def test_a_run_for_another_tenant_cannot_merge(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    assert seed(db).returncode == 0
    before = snapshot(db)
    env = {ENV: str(db)}
    case = "crm_merge_needs_approval"
    first = run_flowrun(
        "execute", SPEC, "--input", EXAMPLES / "inputs" / f"{case}.json",
        "--responses", EXAMPLES / "responses" / f"{case}.jsonl", "--output", "json",
        "--live", "--scopes", SCOPES, "--tenant", "southwind", "--run-id", "t-tenant",
        cwd=tmp_path, env=env, timeout=TIMEOUT,
    )  # fmt: skip
    assert first.rc == 6, str(first)
    done = run_flowrun("approve", "t-tenant", "approve", "--by", "lead", "--output", "json",
                       cwd=tmp_path, env=env, timeout=TIMEOUT)  # fmt: skip
    result = json.loads(done.stdout)
    assert done.rc == 5, str(done)
    assert result["status"] == "denied"
    assert "merges-inside-run-tenant" in result["reason"]
    assert snapshot(db) == before


@pytest.mark.slow
def test_eval_suite_passes_its_gates_and_baseline(tmp_path: Path) -> None:
    p = run_flowrun(
        "eval", SPEC, "--cases", CASES_DIR, "--baseline", BASELINE, "--output", "json",
        cwd=tmp_path, timeout=TIMEOUT,
    )  # fmt: skip
    assert p.rc == 0, str(p)
    report = json.loads(p.stdout)
    assert report["passed"] is True
    kinds = [c["kind"] for c in report["cases"]]
    assert len(kinds) >= 20 and kinds.count("adversarial") >= 5
    assert all(c["passed"] for c in report["cases"]), [
        c for c in report["cases"] if not c["passed"]
    ]
    assert report["metrics"]["policy_violations"] == 0


def test_policy_cases_pass(tmp_path: Path) -> None:
    p = run_flowrun("policy", "test", SPEC, "--cases", POLICY_CASES, cwd=tmp_path)
    assert p.rc == 0, str(p)
    assert "0 failed" in p.stdout


def test_a_delete_tool_added_later_is_denied_by_policy(tmp_path: Path) -> None:
    """`never-delete` guards tools the spec does not have yet: add one and ask."""
    text = SPEC.read_text(encoding="utf-8")
    text = text.replace(
        "\ntools:\n",
        '\ntools:\n  delete_contact: {impl: "tools.crm.contacts:archive_contact", effect: write}\n',
        1,
    )
    text = text.replace(
        "\npolicies:\n",
        "\npolicies:\n  - {id: let-revops-delete, when: 'tool == \"delete_contact\"', effect: allow}\n",
        1,
    )
    (tmp_path / "prompts").mkdir()
    shutil.copy(SPEC.parent / "prompts" / "crm_propose.j2", tmp_path / "prompts")
    copy = tmp_path / "crm_hygiene.yaml"
    copy.write_text(text, encoding="utf-8")
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "deleting a contact is denied even when another rule allows it",
                    "request": {
                        "tool": "delete_contact",
                        "args": {"account_id": "ACC-100", "contact_id": "C-1005", "reason": "x"},
                        "inputs": {"account_id": "ACC-100"},
                    },
                    "expect": {"effect": "deny", "rule": "never-delete"},
                }
            ]
        ),
        encoding="utf-8",
    )
    p = run_flowrun("policy", "test", copy, "--cases", cases, cwd=tmp_path)
    assert p.rc == 0, str(p)
    assert "1 passed, 0 failed" in p.stdout


# --- the real local model --------------------------------------------------------------------


@pytest.mark.local_model
def test_runs_end_to_end_on_the_local_model(gguf: Path, tmp_path: Path) -> None:  # noqa: F811
    """Harbor Logistics, whose notes carry an injection, on Gemma 3 270M: any legitimate
    outcome, but the envelope holds (valid JSON, only the gate-checked writes, no merge
    without a person)."""
    db = tmp_path / "crm.db"
    assert seed(db).returncode == 0
    before = snapshot(db)
    proc = run_local(
        "execute", SPEC, "--profile", "local", "--live", "--scopes", SCOPES,
        "--input", EXAMPLES / "inputs" / "crm_merge_needs_approval.json", "--output", "json",
        env={ENV: str(db), "FLOWRUN_STORE": str(tmp_path / "flowrun.db")}, timeout=900,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["status"] in ("succeeded", "escalated", "waiting"), proc
    assert proc.rc == {"succeeded": 0, "escalated": 3, "waiting": 6}[result["status"]]
    assert result["profile"] == "local"
    propose = result["nodes"]["propose"]
    assert propose["status"] == "succeeded" and propose["model"] == "local/gemma-3-270m"
    assert propose["usage"]["cost_usd"] == 0.0 and propose["usage"]["output_tokens"] > 0
    schema = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["nodes"]["propose"]["output"]
    jsonschema.validate(propose["output"], schema)
    after = snapshot(db)
    # merges need a person, so no single execute merges anything, whatever the model said
    assert after["merges"] == []
    assert [c for c in after["contacts"] if c["merged_into"]] == [
        c for c in before["contacts"] if c["merged_into"]
    ]
    # the only contact of this account an archival may take is the stale, dealless C-1005
    archived = {a["contact_id"] for a in after["archivals"]}
    assert archived <= {"C-1005"}
    changed = {
        c["contact_id"]
        for c, b in zip(after["contacts"], before["contacts"], strict=True)
        if c != b
    }
    assert changed == archived
    assert after["deals"] == before["deals"]
    if result["status"] == "waiting":
        assert result["nodes"]["approve"]["status"] == "waiting" and "apply" not in result["nodes"]
    elif result["status"] == "escalated":
        assert archived == set()
        assert any(n["status"] == "escalated" for n in result["nodes"].values())
    else:
        assert result["nodes"]["approve"]["output"]["auto"] is True
        assert audits(db) == ([f"crm-hygiene: archived {', '.join(sorted(archived))}"]
                              if archived else [])  # fmt: skip
