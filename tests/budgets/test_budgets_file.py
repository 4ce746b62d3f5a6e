"""The budgets file: positioned errors, its JSON Schema in the package, `flowrun budgets`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.errors import SpecError
from runner.spec.budgets import (
    SCHEMA_FILE,
    Budgets,
    CallScope,
    budgets_schema_text,
    load_budgets_text,
    window_bounds,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
apiVersion: flowrun/v1
kind: Budgets
ceilings:
  acme-daily: {scope: {tenant: acme}, window: day, max_usd: 5, soft: 0.8}
  each-tenant-rolling: {scope: {tenant: "*"}, window: 24h, max_llm_calls: 100, on_exceed: wait}
  email-tool: {scope: {tool: send_email}, window: month, max_tool_calls: 1000}
rate_limits:
  email-per-domain: {tool: send_email, destination: domain, limit: 60, per: 1m}
  mini-tpm: {model: openai/gpt-4o-mini, unit: tokens, limit: 200000, per: 60}
"""

BAD = """\
apiVersion: flowrun/v1
kind: Budgets
ceilings:
  acme:
    scope: {tenant: acme, tenat: x}
    window: dayy
    max_usd: 5
  "bad name": {max_usd: 1}
  nothing: {window: day}
  t: {scope: {tool: send}, max_tool_calls: -1, on_exceed: stop}
rate_limits:
  both: {tool: a, model: b, limit: 1, per: 1s}
  noper: {tool: a, limit: 1}
"""


def test_a_good_file_loads_and_selects_calls() -> None:
    f = load_budgets_text(GOOD, "b.yaml")
    b = Budgets.from_file(f)
    acme_llm = CallScope(tenant="acme", workflow="w", kind="llm")
    other_tool = CallScope(tenant="zeta", workflow="w", kind="tool", tool="send_email")
    assert [c.id for c in b.applicable(acme_llm)] == ["acme-daily", "each-tenant-rolling"]
    assert [c.id for c in b.applicable(other_tool)] == ["each-tenant-rolling", "email-tool"]
    each = b.ceilings[1]
    assert each.bound(other_tool) == {"tenant": "zeta"}
    assert each.lock_key(other_tool) != each.lock_key(acme_llm)  # each tenant its own ceiling
    # the JSON form stored in the store reads back the same
    from runner.spec.budgets import to_json

    assert Budgets.from_json(to_json(f)) == b


def test_every_problem_is_positioned() -> None:
    with pytest.raises(SpecError) as e:
        load_budgets_text(BAD, "b.yaml")
    lines = [d.render().splitlines()[0] for d in e.value.diagnostics]
    assert lines == [
        "b.yaml:5:27: unknown-key: unknown key 'tenat' in ceilings.acme.scope",
        "b.yaml:6:13: invalid-value: 'window' in ceilings.acme: invalid window 'dayy'; use "
        "hour, day or month (calendar, UTC) or a duration such as '15m', '24h', '30d' (rolling)",
        "b.yaml:8:3: invalid-name: ceilings name 'bad name' must start with a letter or digit "
        "and hold only letters, digits and _ . : @ -",
        "b.yaml:9:3: invalid-value: ceilings.nothing: a ceiling needs at least one of max_usd, "
        "max_tokens, max_llm_calls, max_tool_calls",
        "b.yaml:10:44: invalid-value: 'max_tool_calls' in ceilings.t: input should be greater "
        "than or equal to 0",
        "b.yaml:10:59: invalid-value: 'on_exceed' in ceilings.t: input should be 'fail', 'wait' "
        "or 'escalate'",
        "b.yaml:12:3: invalid-value: rate_limits.both: a rate limit names exactly one of `tool` "
        "or `model`",
        "b.yaml:13:3: missing-key: missing required key 'per' in rate_limits.noper",
    ]
    assert "did you mean 'tenant'?" in e.value.diagnostics[0].render()


def test_the_shipped_schema_is_current_and_agrees_with_the_loader() -> None:
    assert SCHEMA_FILE.read_text() == budgets_schema_text(), (
        "regenerate: flowrun budgets schema > runner/spec/budgets.schema.json"
    )
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(yaml.safe_load(GOOD), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(BAD), schema)


def test_windows() -> None:
    t = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
    assert window_bounds("day", t) == (1779926400.0, 1780012800.0)
    assert window_bounds("hour", t) == (1779998400.0, 1780002000.0)
    start, end = window_bounds("month", t)
    assert (start, end) == (1777593600.0, 1777593600.0 + 31 * 86400)
    assert window_bounds("15m", t) == (t - 900, None)
    assert window_bounds(None, t) == (0.0, None)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "budgets", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_set_refuses_a_bad_file_and_changes_nothing(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWRUN_STORE": str(tmp_path / "s.db")}
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    p = _cli("set", "--file", str(bad), env=env)
    assert p.returncode == 2 and p.stdout == ""
    assert f"{bad}:5:27: unknown-key: unknown key 'tenat'" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "s.db").exists()  # nothing created, nothing set
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    p = _cli("set", "--file", str(good), "--by", "ops@acme", env=env)
    assert p.returncode == 0, p.stderr
    assert "budgets version 1 in force: 3 ceilings, 2 rate limits" in p.stdout
    p = _cli("show", "--output", "json", env=env)
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["version"] == 1 and shown["set_by"] == "ops@acme"
    assert set(shown["rate_limits"]) == {"email-per-domain", "mini-tpm"}
    # no spend yet: only the ceilings without "*" have a scope to show
    assert [c["ceiling"] for c in shown["ceilings"]] == ["acme-daily", "email-tool"]
    assert shown["ceilings"][0]["dimensions"]["usd"]["used"] == 0.0
    p = _cli("set", "--file", str(bad), env=env)
    assert p.returncode == 2
    assert json.loads(_cli("show", "--output", "json", env=env).stdout)["version"] == 1
