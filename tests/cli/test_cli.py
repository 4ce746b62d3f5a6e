"""`flowrun validate`, `schema`, help and the progress display: CliRunner and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from tests.cli.conftest import (
    REPO,
    SPEC,
    flowrun_env,
    refund_rows,
    run_flowrun,
    run_on_pty,
)

SCHEMA_FILE = REPO / "schema" / "flowrun-v1.schema.json"
KINDS = {"tool": 4, "llm": 3, "switch": 1, "gate": 1, "approval": 1}
PROFILES = ["default", "ci", "prod", "local"]
ANSI_OR_CR = ("\x1b[", "\r")

# a reference-tools workflow without LLM nodes: runs in a second, so the display can be watched
LOOKUP_SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: ticket-lookup}
inputs:
  type: object
  properties:
    ticket_id: {type: string}
  required: [ticket_id]
tools:
  get_ticket: {impl: tools.helpdesk:get_ticket, effect: read}
  search_kb: {impl: tools.kb:search_kb, effect: read}
nodes:
  intake:
    tool: get_ticket
    args: {ticket_id: "${{ inputs.ticket_id }}"}
  retrieve:
    tool: search_kb
    args: {query: "${{ nodes.intake.output.subject }}", limit: 2}
outputs:
  subject: "${{ nodes.intake.output.subject }}"
"""


@pytest.fixture
def lookup_spec(tmp_path: Path) -> Path:
    p = tmp_path / "spec" / "lookup.yaml"
    p.parent.mkdir()
    p.write_text(LOOKUP_SPEC, encoding="utf-8")
    return p


# --- validate -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validate_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    p = run_flowrun("validate", SPEC, "--output", "json", cwd=tmp_path_factory.mktemp("v"))
    assert p.rc == 0, str(p)
    assert p.stderr == "", str(p)
    data: dict[str, object] = json.loads(p.stdout)
    return data


def test_validate_json_describes_the_reference_spec(validate_json: dict[str, object]) -> None:
    s = validate_json
    assert s["valid"] is True
    assert s["workflow"] == "support-refund"
    assert s["nodes"] == KINDS
    assert s["node_count"] == 10
    assert isinstance(s["edges"], int) and s["edges"] >= 8  # 9 connected nodes
    assert s["tools"] == {
        "get_ticket": "read",
        "search_kb": "read",
        "issue_refund": "write",
        "add_note": "write",
    }
    routes = s["routes"]
    assert isinstance(routes, dict) and list(routes) == PROFILES
    assert routes["default"]["strong"] == ["anthropic/claude-sonnet-4-5"]
    assert routes["default"]["small"] == ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
    assert routes["ci"] == {"small": ["openai/gpt-4o-mini"], "strong": ["openai/gpt-4o-mini"]}
    assert routes["local"]["small"] == ["local/gemma-3-270m"]
    budget = s["budget"]
    assert isinstance(budget, dict) and budget["max_usd"] == 0.05 and budget["max_tokens"] == 20000
    cost = s["worst_case_cost"]
    assert isinstance(cost, dict) and list(cost) == PROFILES
    # sonnet is dearer than gpt-4o-mini: the default routes must cost more than the ci ones
    assert cost["default"]["usd"] > cost["ci"]["usd"] > 0
    assert cost["default"]["llm_calls"] >= 3


def test_validate_text_summary_matches_the_json(
    tmp_path: Path, validate_json: dict[str, object]
) -> None:
    p = run_flowrun("validate", SPEC, cwd=tmp_path)
    assert p.rc == 0, str(p)
    out = p.stdout
    assert f"{SPEC}: ok — workflow 'support-refund'" in out
    assert (
        f"nodes    10 (1 approval, 1 gate, 3 llm, 1 switch, 4 tool), {validate_json['edges']} edges"
        in out
    )
    assert "issue_refund (write)" in out and "get_ticket (read)" in out
    assert "[default]  [ci]  [prod]  [local]" in out
    assert "strong: anthropic/claude-sonnet-4-5 | openai/gpt-4o-mini |" in out
    assert "budget   max_usd 0.05, max_tokens 20000" in out
    cost = validate_json["worst_case_cost"]
    assert isinstance(cost, dict)
    for prof in PROFILES:
        assert f"worst-case cost [{prof}] ${cost[prof]['usd']:.4f}" in out


def test_validate_does_not_import_litellm(tmp_path: Path) -> None:
    """Validate must stay fast: litellm (seconds to import) is for runs only."""
    report = tmp_path / "modules.json"
    probe = (
        "import json, sys\n"
        "from runner.cli import cli\n"
        "rc = cli.main(sys.argv[2:], standalone_mode=False)\n"
        "top = {'litellm', 'openai', 'tiktoken'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in top)\n"
        "json.dump({'rc': rc, 'heavy': heavy, 'compiled': 'runner.plan.compile' in sys.modules},"
        " open(sys.argv[1], 'w'))\n"
    )
    cp = subprocess.run(
        [sys.executable, "-c", probe, str(report), "validate", str(SPEC)],
        cwd=tmp_path,
        env=flowrun_env(None),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    assert "ok — workflow 'support-refund'" in cp.stdout
    seen = json.loads(report.read_text())
    assert seen["compiled"] is True  # the probe saw the pipeline run, so it sees imports
    assert seen["rc"] in (None, 0)
    assert seen["heavy"] == [], seen["heavy"]


# --- schema ---------------------------------------------------------------------------------


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    """The staleness test: change a model without `flowrun schema > schema/...` and this fails."""
    p = run_flowrun("schema", cwd=tmp_path)
    assert p.rc == 0, str(p)
    regenerate = f"flowrun schema > {SCHEMA_FILE.relative_to(REPO)}"
    assert p.stdout == SCHEMA_FILE.read_text(encoding="utf-8"), f"stale; regenerate: {regenerate}"
    doc = json.loads(p.stdout)
    assert doc["properties"]["apiVersion"]["const"] == "flowrun/v1"
    assert set(doc["required"]) >= {"apiVersion", "kind", "metadata", "nodes"}


def test_schema_check_passes_on_the_committed_file_and_fails_on_a_stale_one(tmp_path: Path) -> None:
    ok = run_flowrun("schema", "--check", SCHEMA_FILE, cwd=tmp_path)
    assert ok.rc == 0, str(ok)
    assert "up to date" in ok.stdout
    stale = tmp_path / "stale.json"
    doc = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    del doc["$defs"]["Budget"]
    stale.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    bad = run_flowrun("schema", "--check", stale, cwd=tmp_path)
    assert bad.rc == 1, str(bad)
    assert f"{stale} is stale" in bad.stderr
    assert "flowrun schema >" in bad.stderr
    missing = run_flowrun("schema", "--check", tmp_path / "absent.json", cwd=tmp_path)
    assert missing.rc == 1, str(missing)
    assert "Traceback" not in missing.stderr


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        ((), ("validate", "execute", "schema")),
        (("validate",), ("--profile", "--output")),
        (
            ("execute",),
            ("--input", "--responses", "--max-usd", "never loosens", "4 budget_exceeded"),
        ),
        (("schema",), ("--check",)),
    ],
)
def test_help_exits_0(tmp_path: Path, argv: tuple[str, ...], expect: tuple[str, ...]) -> None:
    p = run_flowrun(*argv, "--help", cwd=tmp_path)
    assert p.rc == 0, str(p)
    assert p.stdout.startswith("Usage: flowrun")
    text = " ".join(p.stdout.split())  # help text is wrapped to the terminal width
    for e in expect:
        assert e in text, (e, p.stdout)
    assert list(tmp_path.iterdir()) == []


# --- CliRunner (in-process, fast) -----------------------------------------------------------


def test_clirunner_validate_ok() -> None:
    r = CliRunner().invoke(cli, ["validate", str(SPEC)])
    assert r.exit_code == 0, r.output
    assert "ok — workflow 'support-refund'" in r.stdout
    assert r.stderr == ""


def test_clirunner_unknown_key_has_position_and_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.read_text(encoding="utf-8").replace("\nbudget:\n", "\nbudjet:\n"))
    r = CliRunner().invoke(cli, ["validate", str(bad)])
    assert r.exit_code == 2, r.output
    assert f"{bad}:68:1: unknown-key: unknown key 'budjet'" in r.stderr
    assert "hint: did you mean 'budget'?" in r.stderr
    assert r.stdout == ""
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_clirunner_input_schema_error_names_the_field(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["execute", str(SPEC), "--input-json", '{"ticket_id": "X-1"}'])
    assert r.exit_code == 2, r.output
    assert "ticket_id" in r.stderr and "does not match" in r.stderr
    assert "Traceback" not in r.output


def test_clirunner_bad_option_and_command() -> None:
    r = CliRunner().invoke(cli, ["validate", str(SPEC), "--output", "xml"])
    assert r.exit_code == 2
    assert "'xml' is not one of" in r.stderr
    r = CliRunner().invoke(cli, ["explain"])
    assert r.exit_code == 2
    assert "No such command 'explain'" in r.stderr


def test_clirunner_schema_matches_the_file() -> None:
    r = CliRunner().invoke(cli, ["schema"])
    assert r.exit_code == 0
    assert r.stdout == SCHEMA_FILE.read_text(encoding="utf-8")


# --- the live progress display --------------------------------------------------------------


def test_clirunner_text_run_has_no_live_display(
    lookup_spec: Path, fresh_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(fresh_db))
    r = CliRunner().invoke(
        cli,
        ["execute", str(lookup_spec), "--input-json", '{"ticket_id": "T-1001"}', "--run-id", "t-1"],
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("run t-1 (ticket-lookup): succeeded\n")
    assert 'output subject: "Pour-over set arrived broken"' in r.stdout
    assert r.stderr == ""


def test_text_run_off_a_tty_has_the_outcome_line_and_no_live_display(
    lookup_spec: Path, fresh_db: Path, tmp_path: Path
) -> None:
    p = run_flowrun(
        "execute", lookup_spec, "--input-json", '{"ticket_id": "T-1003"}', "--run-id", "t-pipe",
        cwd=tmp_path, db=fresh_db,
    )  # fmt: skip
    assert p.rc == 0, str(p)
    assert p.stdout.splitlines()[0] == "run t-pipe (ticket-lookup): succeeded"
    assert "intake" in p.stdout and "retrieve" in p.stdout
    assert p.stderr == "", repr(p.stderr)
    assert not any(m in p.stdout for m in ANSI_OR_CR), repr(p.stdout)


def test_text_run_on_a_tty_shows_the_live_display_on_stderr_only(
    lookup_spec: Path, fresh_db: Path, tmp_path: Path
) -> None:
    """Control for the test above: the same run with stderr on a terminal does draw with rich."""
    p = run_on_pty(
        "execute", lookup_spec, "--input-json", '{"ticket_id": "T-1003"}', "--run-id", "t-tty",
        cwd=tmp_path, db=fresh_db,
    )  # fmt: skip
    assert p.rc == 0, str(p)
    assert p.stdout.splitlines()[0] == "run t-tty (ticket-lookup): succeeded"
    assert "\x1b[" in p.stderr and "retrieve" in p.stderr, repr(p.stderr)
    assert not any(m in p.stdout for m in ANSI_OR_CR), repr(p.stdout)
    assert refund_rows(fresh_db) == []


def test_a_program_that_calls_main_outlives_the_commands_it_runs_after(tmp_path: Path) -> None:
    """main() called inside another program (a test runner, a library user) leaves it nothing
    that makes a later command end that program: a batch ends a `flowrun` process at once
    (os._exit), never its host's."""
    data = tmp_path / "lines.jsonl"
    data.write_text('{"item": "not an item"}\n')  # one line that fails its schema: exit 1
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from runner.cli import cli, main\n"
        "spec, data, store = sys.argv[2:]\n"
        "sys.argv[:] = ['flowrun', '--version']\n"  # as a test of the console script does
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.argv[:] = ['host']\n"
        "res = CliRunner().invoke(cli, ['batch', spec, '--data', data, '--store', store])\n"
        "print('still here after exit', res.exit_code)\n"
    )
    batch_spec = Path(__file__).resolve().parents[1] / "batch" / "specs" / "batch_flow.yaml"
    cp = subprocess.run(
        [sys.executable, "-c", probe, "x", str(batch_spec), str(data), str(tmp_path / "s.db")],
        cwd=tmp_path,
        env=flowrun_env(None),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cp.returncode == 0, cp.stderr
    assert "still here after exit 1" in cp.stdout, cp.stdout + cp.stderr
