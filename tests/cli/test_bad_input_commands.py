"""Bad input to the newer commands (batch, budgets, users, autonomy, readiness, shadow, stats,
store, intake, serve, mcp) runs nothing: a message naming the option or file and why on stderr,
exit 2, no traceback, and nothing written (no store file, folder, batch, user or level)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.cli import main
from tests.cli.conftest import EXAMPLES, SPEC, Proc, run_flowrun

RESPONSES = EXAMPLES / "responses" / "refund_granted.jsonl"
HUGE = "99999999999999999999d"
BUDGETS = "apiVersion: flowrun/v1\nkind: Budgets\nceilings:\n  x: {scope: {tenant: acme}, "

# files a case can refer to, written fresh into each case's own input folder
FILES: dict[str, str] = {
    "lines.jsonl": '{"ticket_id": "T-1001"}\n',
    "dup_header.csv": "ticket_id,ticket_id\nT-1001,T-1002\n",
    "empty_header.csv": ",ticket_id\nx,T-1001\n",
    "tickets.csv": "ticket_id\nT-1001\n",
    "budgets_inf.yaml": BUDGETS + "window: day, max_usd: .inf}\n",
    "budgets_huge.yaml": BUDGETS + f"window: {HUGE}, max_usd: 1}}\n",
    "budgets_ok.yaml": BUDGETS + "window: day, max_usd: 1}\n",
    "empty.db": "",
    "notify.yaml": "console_url: http://x\ntargets: [1]\n",
    "hooks.yaml": f"hooks:\n  h: {{spec: {SPEC}, secret_env: HOOK_SECRET}}\n",
    "a_list.yaml": "- apiVersion: flowrun/v1\n",
    "blank.yaml": "\n",
}

Argv = Callable[[Path], list[str | Path]]


@dataclass(frozen=True)
class Case:
    """One bad command line (given the folder holding FILES) and what stderr must say."""

    argv: Argv
    expect: tuple[str, ...]  # substrings, or /regex/
    env: tuple[tuple[str, str], ...] = ()  # besides the test's own


def _batch(data: str, *extra: str) -> Argv:
    return lambda d: ["batch", SPEC, "--data", d / data, "--responses", RESPONSES, *extra]


def _with(*argv: str) -> Argv:
    """argv with each name of FILES made a path in the case's folder."""
    return lambda d: [d / a if a in FILES else a for a in argv]


MISSING = "/nowhere-h31/sub/s.db"  # a folder that does not exist: nothing may create it

CASES: dict[str, Case] = {
    # batch: the data file as a whole, and its options
    "batch_csv_duplicate_header": Case(
        _batch("dup_header.csv"), ("/dup_header.csv:1: not CSV:/", "'ticket_id' twice")
    ),
    "batch_csv_empty_header": Case(
        _batch("empty_header.csv"), ("/empty_header.csv:1: not CSV:/", "column 1", "no name")
    ),
    "batch_map_unknown_input": Case(
        _batch("lines.jsonl", "--map", "nosuch=ticket_id"),
        ("--map: 'nosuch' is not an input of the spec", "inputs: ticket_id"),
    ),
    "batch_map_column_not_in_header": Case(
        _batch("tickets.csv", "--map", "ticket_id=nosuch"),
        ("--map: the header of", "has no column 'nosuch'", "columns: ticket_id"),
    ),
    "batch_max_usd_nan": Case(
        _batch("lines.jsonl", "--max-usd", "nan"), ("'--max-usd'", "not a finite number")
    ),
    "batch_max_usd_inf": Case(
        _batch("lines.jsonl", "--max-usd", "inf"), ("'--max-usd'", "not a finite number")
    ),
    "batch_fail_under_nan": Case(
        _batch("lines.jsonl", "--fail-under", "nan"), ("'--fail-under'", "not a finite number")
    ),
    "batch_tenant_empty": Case(_batch("lines.jsonl", "--tenant", ""), ("'--tenant'", "empty")),
    "batch_store_missing_folder": Case(
        _batch("lines.jsonl", "--store", MISSING), ("--store: no folder '/nowhere-h31/sub'",)
    ),
    "batch_store_other_url": Case(
        _batch("lines.jsonl", "--store", "mysql://h/db"), ("--store: 'mysql' is not a store URL",)
    ),
    # budgets files and their store
    "budgets_infinite_usd": Case(
        _with("budgets", "check", "budgets_inf.yaml"),
        (r"/budgets_inf.yaml:4:\d+: invalid-value: /", "finite number"),
    ),
    "budgets_window_too_long": Case(
        _with("budgets", "check", "budgets_huge.yaml"),
        (r"/budgets_huge.yaml:4:\d+: invalid-value: /", "longer than 10 years"),
    ),
    "budgets_set_store_missing_folder": Case(
        _with("budgets", "set", "--file", "budgets_ok.yaml", "--store", MISSING),
        ("--store: no folder",),
    ),
    # a file that is not a spec is named as what it is, not as a spec
    "budgets_file_a_list": Case(
        _with("budgets", "check", "a_list.yaml"),
        ("/a_list.yaml:1:1: not-a-mapping: a budgets file must be a mapping of keys/",),
    ),
    "budgets_file_empty": Case(
        _with("budgets", "check", "blank.yaml"), ("budgets file is empty", "docs/budgets.md")
    ),
    "budgets_set_empty_by": Case(
        _with("budgets", "set", "--file", "budgets_ok.yaml", "--by", ""), ("'--by'", "empty")
    ),
    "budgets_show_empty_tenant": Case(_with("budgets", "show", "--tenant", " "), ("'--tenant'",)),
    # users
    "users_add_empty_role": Case(_with("users", "add", "al", "--role", ""), ("'--role'", "empty")),
    "users_add_empty_tenant": Case(
        _with("users", "add", "al", "--tenant", ""), ("'--tenant'", "empty")
    ),
    "users_add_only_commas_scope": Case(
        _with("users", "add", "al", "--scope", ","), ("'--scope'", "',' is empty")
    ),
    "users_add_store_missing_folder": Case(
        _with("users", "add", "al", "--store", MISSING), ("--store: no folder",)
    ),
    # autonomy, readiness, stats, shadow: windows and filters
    "autonomy_demote_empty_tenant": Case(
        _with("autonomy", "demote", str(SPEC), "issue_refund", "--tenant", ""),
        ("'--tenant'", "empty"),
    ),
    "autonomy_promote_since_huge": Case(
        _with("autonomy", "promote", str(SPEC), "issue_refund", "--since", HUGE),
        ("--since:", "reaches back before 1970"),
    ),
    "readiness_since_huge": Case(
        _with("readiness", str(SPEC), "--since", HUGE), ("--since:", "reaches back before 1970")
    ),
    "stats_empty_workflow": Case(_with("stats", "--workflow", ""), ("'--workflow'", "empty")),
    "readiness_empty_tenant": Case(
        _with("readiness", str(SPEC), "--tenant", ""), ("'--tenant'", "empty")
    ),
    "stats_since_huge": Case(_with("stats", "--since", HUGE), ("--since:", "before 1970")),
    "shadow_limit_huge": Case(
        _with("shadow", str(SPEC), "--runs", "limit=99999999999999999999999"),
        ("--runs: limit=", "from 1 to 10000"),
    ),
    "shadow_since_huge": Case(
        _with("shadow", str(SPEC), "--runs", f"since={HUGE}"), ("--runs: since=", "before 1970")
    ),
    # a path no file system takes: a reader's OSError is bad input, not an internal error
    "store_path_too_long": Case(
        lambda d: ["stats", "--store", "a" * 5000], ("cannot use 'aaa", "File name too long")
    ),
    "budgets_file_path_too_long": Case(
        lambda d: ["budgets", "check", "b" * 5000], ("cannot use 'bbb", "File name too long")
    ),
    "argument_not_utf8": Case(
        lambda d: ["stats", "--tenant", b"\xff".decode("utf-8", "surrogateescape")],
        ("argument 3 (b'\\xff') is not UTF-8 text",),
    ),
    # store migrate: where the copy goes
    "migrate_to_other_url": Case(
        lambda d: ["store", "migrate", "--from", ".flowrun/flowrun.db", "--to", "mysql://h/x"],
        ("--to: 'mysql' is not a store URL",),
    ),
    "migrate_from_empty_file": Case(
        _with("store", "migrate", "--from", "empty.db", "--to", "new.db"),
        ("--from:", "is an empty file, not a flowrun store"),
    ),
    "migrate_to_missing_folder": Case(
        lambda d: ["store", "migrate", "--from", ".flowrun/flowrun.db", "--to", MISSING],
        ("--to: no folder",),
    ),
    # a server's identities file that is no regular file
    "serve_identities_device": Case(
        lambda d: ["serve", "--port", "0", "--identities", "/dev/zero"],
        ("--identities: '/dev/zero' is not a regular file",),
    ),
}


def _matches(pattern: str, text: str) -> bool:
    if pattern.startswith("! "):  # must not appear
        return pattern[2:] not in text
    if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
        return re.search(pattern[1:-1], text) is not None
    return pattern in text


def _state(cwd: Path) -> dict[str, str]:
    """Every file under cwd by content, and the store's rows: what a command could change."""
    out = {}
    for p in sorted(cwd.rglob("*")):
        if p.is_file() and not p.name.endswith(("-wal", "-shm")):
            out[str(p.relative_to(cwd))] = hashlib.sha256(p.read_bytes()).hexdigest()
    conn = sqlite3.connect(f"file:{cwd / '.flowrun' / 'flowrun.db'}?mode=ro", uri=True)
    try:
        out["rows"] = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return out


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory, seeded_template: Path) -> Path:
    """A store folder (.flowrun with its key) holding one recorded run."""
    root = tmp_path_factory.mktemp("store")
    db = root / "support.sqlite"
    shutil.copyfile(seeded_template, db)
    p = run_flowrun("execute", SPEC, "--input-json", '{"ticket_id": "T-1001"}',
                    "--responses", RESPONSES, cwd=root, db=db, timeout=120,
                    env={"FLOWRUN_STORE": ".flowrun/flowrun.db"})  # fmt: skip
    assert p.rc == 5, str(p)  # denied: the run lacks refunds:write, and is recorded
    return root / ".flowrun"


def _prepare(root: Path, template: Path) -> tuple[Path, Path]:
    inputs, cwd = root / "in", root / "cwd"
    inputs.mkdir(parents=True)
    for name, text in FILES.items():
        (inputs / name).write_text(text, encoding="utf-8")
    shutil.copytree(template, cwd / ".flowrun")
    return inputs, cwd


def _check(case: Case, proc: Proc, before: dict[str, str], after: dict[str, str]) -> None:
    assert proc.rc == 2, str(proc)
    assert "Traceback" not in proc.stderr + proc.stdout, str(proc)
    assert "internal error" not in proc.stderr, str(proc)
    assert proc.stdout == "", str(proc)
    missing = [e for e in case.expect if not _matches(e, proc.stderr)]
    assert not missing, f"stderr lacks {missing}\n{proc}"
    assert after == before  # no file, no row, no level, no user, no batch
    assert not Path(MISSING).parent.parent.exists()


def _no_hard_exit(code: int) -> None:
    raise SystemExit(code)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_to_newer_commands(
    name: str,
    tmp_path: Path,
    store_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each case through the console entry point `runner.cli:main`, in this process."""
    inputs, cwd = _prepare(tmp_path, store_template)
    argv = [str(a) for a in CASES[name].argv(inputs)]
    monkeypatch.chdir(cwd)
    for var in ("FLOWRUN_DEBUG", "FLOWRUN_STORE", "FLOWRUN_NOTIFY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", ["flowrun", *argv])
    monkeypatch.setattr(os, "_exit", _no_hard_exit)  # a batch that ran ends with os._exit
    before = _state(cwd)
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    rc = exc.value.code if isinstance(exc.value.code, int) else 1
    _check(CASES[name], Proc(tuple(argv), rc, captured.out, captured.err), before, _state(cwd))


# servers: before the fix these started serving (so each runs as a process, with a timeout)
SERVERS: dict[str, Case] = {
    "serve_identities_file_a_list": Case(
        lambda d: ["serve", "--identities", d / "a_list.yaml", "--port", "0"],
        ("an identities file must be a mapping of keys (identities), not a list",),
    ),
    "serve_empty_host": Case(
        lambda d: ["serve", "--host", ""], ("--host: give an address to listen on",)
    ),
    "serve_empty_oidc_claim": Case(
        lambda d: [
            "serve",
            "--oidc-issuer",
            "https://127.0.0.1:9",
            "--oidc-client-id",
            "c",
            "--oidc-claim",
            "",
        ],
        ("'--oidc-claim'", "empty"),
    ),
    "intake_empty_host": Case(
        lambda d: ["intake", "--hooks", d / "hooks.yaml", "--host", ""],
        ("--host: give an address to listen on",),
    ),
    "intake_unknown_host": Case(
        lambda d: ["intake", "--hooks", d / "hooks.yaml", "--host", "999.1.1.1"],
        ("--host: cannot listen on 999.1.1.1:8766:",),
    ),
    "intake_store_missing_folder": Case(
        lambda d: ["intake", "--hooks", d / "hooks.yaml", "--store", MISSING],
        ("--store: no folder",),
    ),
    "intake_bad_notify_file": Case(
        lambda d: ["intake", "--hooks", d / "hooks.yaml", "--port", "0"],
        ("/notify.yaml:2:10: notify-shape: /", "! flowrun intake: http"),
        env=(("FLOWRUN_NOTIFY", "notify.yaml"),),
    ),
    "serve_bad_notify_file": Case(
        lambda d: ["serve", "--port", "0"],
        ("/notify.yaml:2:10: notify-shape: /", "! flowrun console: http"),
        env=(("FLOWRUN_NOTIFY", "notify.yaml"),),
    ),
    "serve_token_of_spaces": Case(
        lambda d: ["serve", "--port", "0", "--token", " " * 8], ("--token: use at least 8",)
    ),
    "mcp_empty_tenant": Case(
        lambda d: ["mcp", "serve", SPEC, "--http", "127.0.0.1:1", "--tenant", ""],
        ("'--tenant'", "empty"),
    ),
    "mcp_http_unknown_host": Case(
        lambda d: ["mcp", "serve", SPEC, "--http", "999.1.1.1:8000"],
        ("--http: cannot listen on 999.1.1.1:8000:",),
    ),
    "mcp_store_missing_folder": Case(
        lambda d: ["mcp", "serve", SPEC, "--http", "127.0.0.1:1", "--store", MISSING],
        ("--store: no folder",),
    ),
}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_a_server_with_bad_options_does_not_start(
    name: str, tmp_path: Path, store_template: Path
) -> None:
    inputs, cwd = _prepare(tmp_path, store_template)
    before = _state(cwd)
    case = SERVERS[name]
    env = {"HOOK_SECRET": "s" * 32, "FLOWRUN_STORE": ".flowrun/flowrun.db"}
    env.update((k, str(inputs / v)) for k, v in case.env)  # a file of the case's folder
    proc = run_flowrun(*case.argv(inputs), cwd=cwd, timeout=30, env=env)
    _check(case, proc, before, _state(cwd))


@pytest.mark.slow  # a batch in a process of its own: a few seconds each
@pytest.mark.parametrize(
    ("name", "text"),
    [("bom.csv", "ticket_id\nT-1001\n"), ("bom.jsonl", '{"ticket_id": "T-1001"}\n')],
)
def test_a_byte_order_mark_is_no_part_of_the_first_record(
    name: str, text: str, tmp_path: Path, fresh_db: Path
) -> None:
    """A BOM (as spreadsheet exports write) before the header or first JSON line is dropped,
    so the first record is read like the others instead of failing as bad input."""
    data = tmp_path / name
    data.write_text("\ufeff" + text, encoding="utf-8")
    proc = run_flowrun("batch", SPEC, "--data", data, "--responses", RESPONSES,
                       "--output", "json", cwd=tmp_path, db=fresh_db, timeout=120)  # fmt: skip
    assert "bad input" not in proc.stdout, str(proc)
    assert '"status": "denied"' in proc.stdout and proc.rc == 5, str(proc)  # as without a BOM
