"""Seeded secrets through the ways a value enters that tests/security/test_secrets_at_rest.py does
not try: an input that fails the inputs schema (its error message quotes the value), a batch's
data (JSONL and CSV, a column no input is mapped from), a run's reason as a batch line records
it, and an operator's reason for an autonomy change. Nothing shows them, and no byte of the
store (every file under a SQLite store's folder; every text column of every row of a PostgreSQL
store) holds them in clear.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.store import open_store

HERE = Path(__file__).resolve().parent
SPEC = str(HERE / "specs" / "everywhere.yaml")

# assembled at run time: the repository holds no literal key
_PEM_BODY = base64.b64encode(bytes(range(7, 7 + 96))).decode()
SEEDS = {
    "stripe": "sk_live_" + "hejfhZuadArwm3mRPyDMEYwL",
    "aws": "AKIA" + "83T5EA4YYXHPA82U",
    "ghp": "ghp_" + "341S3k6FUNEcSf4M7UsDrB8GAqE4N9WEybWz",
    "github_pat": "github_pat_" + "uZ9ukg9l6TuN8s6NlWU9w1_BB7Zv7P3xW3LQGc2VO5UaoEfZr2LfKhm3mm8Me",
    "jwt": "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiJtYXlhIn0." + "6fcADoQUl_Ndca_LQPqQmRX_5IzkzqHm",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\n"
    + f"{_PEM_BODY[:64]}\n{_PEM_BODY[64:]}\n"
    + "-----END RSA PRIVATE KEY-----",
    "email": "maya.everywhere@example.org",
    "card_spaces": "5555 5555 5555 4444",
    "card_dashes": "4012-8888-8888-1881",
    "card_run_together": "4111111111111111",
    "token": "Zk3bfjvlxVqptN10aFCMyKs9UroWcskz",
}
# what a scan looks for: the seed, or for a PEM block a line of its body
NEEDLES = {**SEEDS, "pem": _PEM_BODY[:40]}
ALL = " | ".join(SEEDS.values())


def in_clear(data: str | bytes) -> list[str]:
    """The seeds found in `data`, as they are or JSON-escaped (a PEM's newlines)."""
    raw = data if isinstance(data, bytes) else data.encode()
    return [
        k for k, n in NEEDLES.items() if n.encode() in raw or json.dumps(n)[1:-1].encode() in raw
    ]


def flowrun(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("kind", SEEDS)
def test_an_input_that_fails_the_schema_is_not_echoed(kind: str) -> None:
    bad = json.dumps({"value": "ok", "count": SEEDS[kind]})
    res = flowrun("execute", SPEC, "--input-json", bad)
    assert res.exit_code == 2
    assert "count:" in res.output and "is not of type 'integer'" in res.output
    assert "[REDACTED:" in res.output
    assert in_clear(res.output) == []


def _pg_rows(url: str) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every text or bytea cell of every table of the database."""
    import psycopg

    out = []
    with psycopg.connect(url) as c:
        cols = c.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "AND data_type IN ('text', 'bytea', 'character varying', 'jsonb', 'json')"
        ).fetchall()
        for table, column in cols:
            for (v,) in c.execute(f'SELECT "{column}"::text FROM "{table}"').fetchall():
                if v is not None:
                    out.append((table, column, v))
    return out


def test_batch_lines_and_operator_reasons_are_sealed_at_rest(target: str, tmp_path: Path) -> None:
    data = tmp_path / "data"  # apart from a SQLite store's folder, which is scanned
    data.mkdir()
    jsonl = data / "data.jsonl"
    jsonl.write_text(
        json.dumps({"value": ALL, "unmapped": ALL})
        + "\n"
        + json.dumps({"value": "fine", "count": SEEDS["card_run_together"]})  # bad input
        + "\n"
    )
    table = data / "data.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["v", "unmapped"], [ALL, ALL], [SEEDS["email"], SEEDS["stripe"]]])
    outputs = []
    for args in (
        ("batch", SPEC, "--data", str(jsonl), "--batch-id", "b-jsonl", "--output", "json"),
        ("batch", SPEC, "--data", str(table), "--map", "value=v", "--batch-id", "b-csv"),
        ("autonomy", "demote", SPEC, "refund", "--to", "approval", "--by", "ops",
         "--reason", f"leaked {ALL}"),
    ):  # fmt: skip
        res = flowrun(*args, "--store", target)
        assert res.exit_code in (0, 1, 6), res.output  # lines wait for approval or fail
        outputs.append((args[0], res.output))
    for shown_args in (
        ("show", "b-jsonl"),
        ("show", "b-csv", "--output", "json"),
        ("batches", "--output", "json"),
        ("autonomy", "show", SPEC),
    ):
        res = flowrun(*shown_args, "--store", target)
        assert res.exit_code == 0, res.output
        outputs.append((shown_args[0], res.output))
    for where, text in outputs:
        assert in_clear(text) == [], where
    shown = json.loads(flowrun("show", "b-jsonl", "--output", "json", "--store", target).output)
    reasons = [line["reason"] for line in shown["lines"]]
    assert "waits for approval" in reasons[0] and "[REDACTED:card]" in reasons[0]
    assert "count:" in reasons[1] and "[REDACTED:card]" in reasons[1]

    # the store reads back what was written: the engine sees the real reason
    store = open_store(target)
    try:
        assert SEEDS["stripe"] in store.batch_lines("b-jsonl")[0]["reason"]
        assert SEEDS["aws"] in store.autonomy_rows("everywhere")[0]["reason"]
    finally:
        store.close()

    if target.startswith("postgresql"):
        cells = _pg_rows(target)
        assert {t for t, _, _ in cells} >= {"batch_lines", "autonomy", "runs"}
        leaks = [(t, c, in_clear(v)) for t, c, v in cells if in_clear(v)]
        assert leaks == []
        return
    folder = Path(target).parent
    files = [p for p in folder.rglob("*") if p.is_file() and data not in p.parents]
    assert "flowrun.db" in {p.name for p in files}
    for path in files:
        assert in_clear(path.read_bytes()) == [], path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_every_folder_flowrun_creates_is_private(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if target.startswith("postgresql"):  # transcripts go under $FLOWRUN_STORE_DIR
        top = Path(os.environ["FLOWRUN_STORE_DIR"])
        store = ["--store", target]
    else:  # the default store, the one store whose folder flowrun makes (.flowrun/)
        monkeypatch.delenv("FLOWRUN_STORE", raising=False)
        monkeypatch.chdir(tmp_path)
        top = tmp_path / ".flowrun"
        store = []
    assert not top.exists()
    res = flowrun("execute", str(SPEC), "--input-json", '{"value": "x"}', *store)
    assert res.exit_code == 6, res.output  # waits for approval: its transcript is written
    folders = [top, *(p for p in top.rglob("*") if p.is_dir())]
    assert any(p.name == "transcripts" for p in folders)
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {
        str(p): "0o700" for p in folders
    }
    for path in (p for p in top.rglob("*") if p.is_file()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
