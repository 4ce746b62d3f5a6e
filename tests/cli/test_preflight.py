"""Keys are checked before a run: a missing one ends the command at once (exit 2), nothing run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli.conftest import EXAMPLES, FLOWRUN, REPO, SPEC, Proc

NO_KEYS = {"OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None}
FAKE_KEYS = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}


def flowrun(*args: str | Path, cwd: Path, keys: dict[str, str | None]) -> Proc:
    """flowrun with exactly these provider keys set (None: unset), whatever this shell has."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWRUN_DEBUG"}
    env["PYTHONPATH"] = str(REPO)
    env["FLOWRUN_STORE"] = str(cwd / "store.db")
    for k, v in keys.items():
        env.pop(k, None)
        if v is not None:
            env[k] = v
    argv = tuple(str(a) for a in args)
    cp = subprocess.run(
        [*FLOWRUN, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    return Proc(argv, cp.returncode, cp.stdout, cp.stderr)


def test_execute_without_keys_stops_before_the_run(tmp_path: Path) -> None:
    inputs = EXAMPLES / "inputs" / "refund_granted.json"
    p = flowrun("execute", SPEC, "--input", inputs, cwd=tmp_path, keys=NO_KEYS)
    assert p.rc == 2, str(p)
    assert p.stdout == ""
    assert "OPENAI_API_KEY is not set (needed by openai/gpt-4o-mini ('small'))" in p.stderr
    assert "ANTHROPIC_API_KEY is not set" in p.stderr
    assert "--profile local" in p.stderr and "--responses FILE" in p.stderr
    assert not (tmp_path / "store.db").exists()  # no run recorded, not even a store


def test_validate_check_env(tmp_path: Path) -> None:
    missing = flowrun("validate", "--check-env", SPEC, cwd=tmp_path, keys=NO_KEYS)
    assert missing.rc == 2, str(missing)
    assert "OPENAI_API_KEY" in missing.stderr and missing.stdout == ""
    local = flowrun(
        "validate", "--check-env", "--profile", "local", SPEC, cwd=tmp_path, keys=NO_KEYS
    )
    assert local.rc == 0, str(local)
    ok = flowrun("validate", "--check-env", SPEC, cwd=tmp_path, keys=FAKE_KEYS)
    assert ok.rc == 0, str(ok)
    without = flowrun("validate", SPEC, cwd=tmp_path, keys=NO_KEYS)  # keys are not asked for
    assert without.rc == 0, str(without)


def test_validate_several_specs_exits_with_the_worst(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: flowrun/v1\nkind: Workflow\n", encoding="utf-8")
    p = flowrun("validate", "--output", "json", SPEC, bad, SPEC, cwd=tmp_path, keys={})
    assert p.rc == 2, str(p)
    assert [s["workflow"] for s in json.loads(p.stdout)] == ["support-refund"] * 2
    assert "bad.yaml:" in p.stderr
    both = flowrun("validate", SPEC, SPEC, cwd=tmp_path, keys={})
    assert both.rc == 0, str(both)
