"""`flowrun init`: the generated project validates, seeds, runs, evals and policy-tests as created
(through the real `flowrun` command in its own folder); refusals change nothing."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.spec.loader import load_file
from runner.spec.schema import schema_text
from tests.local_model.conftest import gguf, local_extra  # noqa: F401  (fixtures)

_SCRIPT = Path(sys.executable).parent / "flowrun"
FLOWRUN: tuple[str, ...] = (
    (str(_SCRIPT),) if _SCRIPT.is_file() else (sys.executable, "-m", "runner.cli")
)
NAME = "billing-credits"
SPEC = f"specs/{NAME}.yaml"
DB_ENV = "BILLING_CREDITS_DB"
EXPECTED_FILES = {
    ".gitignore",
    ".github/workflows/flowrun.yml",
    "README.md",
    SPEC,
    "schema/flowrun-v1.schema.json",
    "tools/__init__.py",
    "tools/billing_credits.py",
    "tools/seed.py",
    "examples/inputs/credit_granted.json",
    "examples/responses/credit_granted.jsonl",
    "evals/gold.yaml",
    "evals/adversarial.yaml",
    f"policies/{NAME}.cases.yaml",
}


@dataclass(frozen=True)
class Proc:
    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{' '.join(self.args)} -> {self.rc}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment as a user's shell has it: no debug tracebacks, no repo on the
    path (the project must find its own `tools` package), no database chosen for it."""
    drop = {"FLOWRUN_DEBUG", "PYTHONPATH", DB_ENV}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


def _run(argv: tuple[str, ...], cwd: Path, env: Mapping[str, str] | None, timeout: float) -> Proc:
    cp = subprocess.run(
        list(argv),
        cwd=cwd,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Proc(argv, cp.returncode, cp.stdout, cp.stderr)


def flowrun(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> Proc:
    """Run the real `flowrun` command in `cwd`."""
    return _run((*FLOWRUN, *(str(a) for a in args)), cwd, env, timeout)


def python(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> Proc:
    return _run((sys.executable, *(str(a) for a in args)), cwd, env, 120)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders), to prove nothing changed."""
    out: dict[str, bytes | None] = {".": None}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() else None
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project, created once with `flowrun init DIR`; tests use their own database."""
    root = tmp_path_factory.mktemp("init")
    proc = flowrun("init", NAME, cwd=root)
    assert proc.rc == 0, proc
    return root / NAME


@pytest.fixture
def db(project: Path, tmp_path: Path) -> dict[str, str]:
    """A freshly seeded database made the way the README says, pointed at by the env var."""
    env = {DB_ENV: str(tmp_path / "credits.db")}
    proc = python("-m", "tools.seed", cwd=project, env=env)
    assert proc.rc == 0, proc
    assert "seeded" in proc.stdout and "5 requests" in proc.stdout, proc
    return env


def rows(env: Mapping[str, str], sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(env[DB_ENV]) as conn:
        return conn.execute(sql).fetchall()


# --- what is created ---------------------------------------------------------------------


def test_init_writes_the_project_and_prints_next_steps(tmp_path: Path) -> None:
    proc = flowrun("init", "my-flow", cwd=tmp_path)
    assert proc.rc == 0, proc
    root = tmp_path / "my-flow"
    made = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert {
        f.replace(NAME, "my-flow").replace("billing_credits", "my_flow") for f in EXPECTED_FILES
    } <= made
    # every file written is listed, and the next steps are commands for this project
    for rel in made:
        assert f"  {rel}\n" in proc.stdout, rel
    assert "cd my-flow" in proc.stdout
    assert "flowrun validate specs/my-flow.yaml" in proc.stdout
    assert "python -m tools.seed" in proc.stdout
    assert "--responses examples/responses/credit_granted.jsonl" in proc.stdout
    assert (root / ".gitignore").read_text().splitlines().count(".flowrun/") == 1
    # no placeholder survives, in a path or a file
    for p in root.rglob("*"):
        assert "__NAME__" not in str(p) and "__PKG__" not in str(p)
        if p.is_file():
            assert not re.search(r"__(NAME|PKG|ENV|VERSION)__", p.read_text()), p


def test_spec_modeline_points_at_the_written_schema(project: Path) -> None:
    spec = project / SPEC
    first = spec.read_text().splitlines()[0]
    m = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert m, first
    schema = (spec.parent / m.group(1)).resolve()
    assert schema == (project / "schema" / "flowrun-v1.schema.json").resolve()
    assert schema.read_text() == schema_text()
    # the schema an editor loads accepts the generated spec
    # (read as YAML 1.2 like editors do: a bare `on` key stays a string)
    jsonschema.validate(load_file(spec).data, json.loads(schema.read_text()))


def test_generated_spec_validates(project: Path) -> None:
    proc = flowrun("validate", SPEC, cwd=project)
    assert proc.rc == 0, proc
    assert f"ok — workflow '{NAME}'" in proc.stdout
    assert "issue_credit (write)" in proc.stdout and "[local]" in proc.stdout
    assert proc.stderr == "", proc  # no warnings either


def test_generated_python_is_lint_clean(project: Path) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.is_file():
        pytest.skip("ruff is not installed next to this Python")
    cp = subprocess.run(
        [
            str(ruff),
            "check",
            "--no-cache",
            "--select",
            "E,F,W,I,B,UP,RUF,SIM",
            "--line-length",
            "100",
            ".",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.slow
def test_tools_refuse_an_unseeded_database_with_the_fix(project: Path, tmp_path: Path) -> None:
    env = {DB_ENV: str(tmp_path / "missing.db")}
    proc = flowrun(
        "execute",
        SPEC,
        "--input",
        "examples/inputs/credit_granted.json",
        "--responses",
        "examples/responses/credit_granted.jsonl",
        cwd=project,
        env=env,
    )
    assert proc.rc == 1, proc
    assert "is not seeded; run: python -m tools.seed" in proc.stdout + proc.stderr
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.slow
def test_execute_on_recorded_responses_dry_run_then_live(project: Path, db: dict[str, str]) -> None:
    args = (
        "execute",
        SPEC,
        "--input",
        "examples/inputs/credit_granted.json",
        "--responses",
        "examples/responses/credit_granted.jsonl",
        "--output",
        "json",
    )
    dry = flowrun(*args, cwd=project, env=db)
    assert dry.rc == 0, dry
    out = json.loads(dry.stdout)
    assert out["outputs"]["decision"] == "credited"
    assert out["outputs"]["credit"]["status"] == "planned"
    assert rows(db, "SELECT * FROM credits") == []  # a dry run writes nothing
    assert rows(db, "SELECT * FROM notes") == []

    live = flowrun(*args, "--live", cwd=project, env=db)
    assert live.rc == 0, live
    credit = json.loads(live.stdout)["outputs"]["credit"]
    assert credit["status"] == "issued" and credit["amount_usd"] == 20.0
    assert rows(db, "SELECT request_id, amount_usd, status, idempotency_key FROM credits") == [
        ("REQ-1001", 20.0, "issued", "credit:REQ-1001")
    ]
    [(note,)] = rows(db, "SELECT body FROM notes WHERE request_id = 'REQ-1001'")
    assert note.startswith(f"credit {credit['credit_id']} of 20.0 USD issued")


@pytest.mark.slow
def test_execute_over_the_cap_escalates_and_writes_nothing(
    project: Path, db: dict[str, str]
) -> None:
    proc = flowrun(
        "execute",
        SPEC,
        "--input",
        "examples/inputs/over_cap.json",
        "--responses",
        "examples/responses/over_cap.jsonl",
        "--live",
        cwd=project,
        env=db,
    )
    assert proc.rc == 3, proc
    assert "credits over $100 need a manager" in proc.stdout
    assert rows(db, "SELECT * FROM credits") == []


@pytest.mark.slow
def test_eval_cases_pass(project: Path, tmp_path: Path) -> None:
    report = tmp_path / "eval.md"
    proc = flowrun("eval", SPEC, "--cases", "evals", "--report", report, cwd=project)
    assert proc.rc == 0, proc
    assert "eval passed" in proc.stdout
    for case in ("credit-for-downtime", "over-cap-escalates", "injection-credit-5000"):
        assert re.search(rf"^ok +{case} ", proc.stdout, re.M), case
    assert "gold" in proc.stdout and "adversarial" in proc.stdout
    assert report.is_file()


def test_policy_cases_pass(project: Path) -> None:
    proc = flowrun("policy", "test", SPEC, "--cases", f"policies/{NAME}.cases.yaml", cwd=project)
    assert proc.rc == 0, proc
    assert "6 passed, 0 failed" in proc.stdout


def test_ci_workflow_parses_and_runs_the_checks(project: Path) -> None:
    wf = yaml.safe_load((project / ".github" / "workflows" / "flowrun.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    [job] = wf["jobs"].values()
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    spec = wf["env"]["SPEC"]
    assert spec == SPEC and (project / spec).is_file()
    for command in (
        'flowrun validate "$SPEC"',
        f'flowrun policy test "$SPEC" --cases policies/{NAME}.cases.yaml',
        'flowrun eval "$SPEC" --cases evals',
        "python -m tools.seed",
        "--responses examples/responses/credit_granted.jsonl",
        "flowrun diff --git",
        "flowrun schema --check schema/flowrun-v1.schema.json",
    ):
        assert command in runs, command
    diff_step = next(s for s in job["steps"] if "flowrun diff" in s.get("run", ""))
    assert "pull_request" in diff_step["if"]
    for path in re.findall(r"(?:examples|policies|evals)/[\w./-]+", runs):
        assert (project / path).exists(), path


def test_init_in_the_current_folder_takes_its_name(tmp_path: Path) -> None:
    here = tmp_path / "Refund_Triage"
    here.mkdir()
    proc = flowrun("init", cwd=here)
    assert proc.rc == 0, proc
    assert (here / "specs" / "refund-triage.yaml").is_file()
    assert (here / "tools" / "refund_triage.py").is_file()
    assert "cd " not in proc.stdout  # already there
    assert flowrun("validate", "specs/refund-triage.yaml", cwd=here).rc == 0


def test_name_option_overrides_the_folder_name(tmp_path: Path) -> None:
    proc = flowrun("init", "somewhere/deep", "--name", "expense-checks", cwd=tmp_path)
    assert proc.rc == 0, proc
    root = tmp_path / "somewhere" / "deep"
    spec = yaml.safe_load((root / "specs" / "expense-checks.yaml").read_text())
    assert spec["metadata"]["name"] == "expense-checks"
    assert spec["tools"]["issue_credit"]["impl"] == "tools.expense_checks:issue_credit"
    assert "EXPENSE_CHECKS_DB" in (root / "tools" / "expense_checks.py").read_text()


def test_force_adds_the_project_next_to_unrelated_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plan.md").write_text("# plan\n")
    (tmp_path / "specs").mkdir()  # an existing folder the project also uses is fine
    (tmp_path / "specs" / "other.yaml").write_text("x: 1\n")
    proc = flowrun("init", ".", "--name", "side-car", "--force", cwd=tmp_path)
    assert proc.rc == 0, proc
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"
    assert (tmp_path / "docs" / "plan.md").read_text() == "# plan\n"
    assert (tmp_path / "specs" / "other.yaml").read_text() == "x: 1\n"
    assert (tmp_path / "specs" / "side-car.yaml").is_file()
    assert flowrun("validate", "specs/side-car.yaml", cwd=tmp_path).rc == 0


# --- refusals: exit 2, a clear message, nothing changed ------------------------------------


def _refused(proc: Proc, *needles: str) -> None:
    assert proc.rc == 2, proc
    assert "Traceback" not in proc.stderr, proc
    for n in needles:
        assert n in proc.stderr, proc


def test_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hi')\n")
    before = snapshot(tmp_path)
    proc = flowrun("init", ".", "--name", "my-flow", cwd=tmp_path)
    _refused(proc, "is not empty", "app.py", "--force")
    assert snapshot(tmp_path) == before


def test_force_never_overwrites_and_lists_every_conflict(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    (tmp_path / ".gitignore").write_text("*.log\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "seed.py").write_text("# my seed\n")
    (tmp_path / "examples").write_text("a file where a folder must go\n")
    before = snapshot(tmp_path)
    proc = flowrun("init", ".", "--name", "my-flow", "--force", cwd=tmp_path)
    _refused(proc, "4 files already exist", "nothing was written")
    for conflict in ("README.md", ".gitignore", "tools/seed.py", "examples"):
        assert f"\n  {conflict}\n" in proc.stderr + "\n", conflict
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("My-Flow", "invalid workflow name 'My-Flow'"),
        ("my_flow", "invalid workflow name 'my_flow'"),
        ("my--flow", "invalid workflow name"),
        ("-flow", "invalid workflow name"),
        ("9lives", "invalid workflow name"),
        ("x" * 64, "at most 63 characters"),
        ("class", "tools/class.py"),
        ("seed", "tools/seed.py"),
    ],
)
def test_refuses_a_bad_name(tmp_path: Path, name: str, why: str) -> None:
    proc = flowrun("init", "new", "--name", name, cwd=tmp_path)
    _refused(proc, why)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_folder_name_it_cannot_turn_into_a_name(tmp_path: Path) -> None:
    proc = flowrun("init", "2024", cwd=tmp_path)
    _refused(proc, "cannot derive a workflow name", "--name")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "flow").write_text("not a folder\n")
    before = snapshot(tmp_path)
    _refused(flowrun("init", "flow", cwd=tmp_path), "'flow' is a file, not a directory")
    _refused(flowrun("init", "flow/sub", "--name", "a-b", cwd=tmp_path), "is a file")
    assert snapshot(tmp_path) == before


def test_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root writes anywhere chmod allows
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys (sysfs refuses new folders)")
        proc = flowrun("init", "/sys/flowrun-init-test", "--name", "a-b", cwd=tmp_path)
        _refused(proc, "cannot write", "/sys/flowrun-init-test")
        assert not Path("/sys/flowrun-init-test").exists()
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(flowrun("init", "locked/new", "--name", "a-b", cwd=tmp_path), "permission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_write_that_fails_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    from runner.errors import UsageError
    from runner.scaffold import write

    target = tmp_path / "new"
    # the second file cannot be created: its folder would be the first file
    with pytest.raises(UsageError, match="nothing was left behind"):
        write(target, {"a/one.txt": "1", "a/one.txt/two.txt": "2"})
    assert list(tmp_path.iterdir()) == []


# --- the real local model -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.usefixtures("gguf")
def test_generated_spec_runs_on_the_local_model(project: Path, db: dict[str, str]) -> None:
    proc = flowrun(
        "execute",
        SPEC,
        "--profile",
        "local",
        "--input",
        "examples/inputs/credit_granted.json",
        "--output",
        "json",
        cwd=project,
        env=db,
    )
    out = json.loads(proc.stdout)
    # the small model's JSON is kept valid by the schema; its judgement is not: any outcome the
    # workflow is built to reach is fine, and a dry run writes nothing whatever it proposes
    assert out["status"] in ("succeeded", "escalated", "waiting"), proc
    assert proc.rc == {"succeeded": 0, "escalated": 3, "waiting": 6}[out["status"]]
    classify = out["nodes"]["classify"]
    assert classify["status"] == "succeeded" and classify["model"] == "local/gemma-3-270m"
    assert rows(db, "SELECT * FROM credits") == []
