"""Seeded secrets through the ways a value enters that tests/security/test_secrets_at_rest.py does
not try: an input that fails the inputs schema (its error message quotes the value), a batch's
data (JSONL and CSV, a column no input is mapped from), a run's reason as a batch line records
it, and an operator's reason for an autonomy change. Nothing shows them, and no byte of the
store (every file under a SQLite store's folder; every text column of every row of a PostgreSQL
store) holds them in clear.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli

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
