"""A hooks file's mistakes are diagnostics `path:line:col: rule-id: message`, never tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.web.hookfile import load_hooks
from tests.intake.conftest import REVIEW, ROOT

ENV = {"GOOD": "a-secret-long-enough-0123", "SHORT": "short"}


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "hooks.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_hooks(path, env=ENV)
    return [d.render().splitlines()[0].replace(str(path), "H") for d in e.value.diagnostics]


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        f"hooks:\n  t:\n    spec: {REVIEW}\n    secret_env: GOOD\n"
        "    inputs: {ticket_id: /ticket/id}\n    rate_limit: {requests: 5, per_s: 10}\n"
    )
    hooks = load_hooks(path, env=ENV)
    hook = hooks.hooks["t"]
    assert hook.secrets == (ENV["GOOD"],) and hook.inputs == {"ticket_id": "/ticket/id"}
    assert hook.rate_limit is not None and hook.rate_limit.requests == 5


def test_each_mistake_is_named_at_its_place(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        f"""hooks:
  t:
    spec: {REVIEW}
    secret_env: [MISSING, SHORT]
    secret: "literal"
    inptus: {{}}
    inputs: {{ticket: /ticket/id, ticket_id: "ticket/id"}}
    max_body_bytes: -1
    backend: lambda
    identity: "no spaces!"
  "bad name!":
    spec: nowhere.yaml
    secret_env: GOOD
""",
    )
    assert got == [
        "H:4:18: hook-secret-unset: environment variable 'MISSING' is not set",
        "H:4:27: hook-secret-weak: the secret in 'SHORT' has 5 characters; use at least 16",
        "H:5:5: secret-in-file: a secret may not be written in the file",
        "H:6:5: unknown-key: unknown key 'inptus'",
        "H:7:14: unknown-input: 'ticket-review' has no input 'ticket'",
        "H:7:45: bad-pointer: 'ticket/id' is not a JSON pointer",
        "H:8:21: bad-value: 'max_body_bytes' must be a whole number from 1 to 16777216",
        "H:9:14: bad-value: unknown backend 'lambda'",
        "H:10:15: bad-value: identity: 'no spaces!' is not a valid identity name",
        "H:11:3: hook-name: hook name 'bad name!' cannot be a URL segment",
        "H:12:11: file-not-found: no such spec file 'nowhere.yaml'",
    ]


def test_a_bad_file_stops_the_server_before_it_serves(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text("hooks:\n  t:\n    spec: x.yaml\n")
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "intake", "--hooks", str(path), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "hooks.yaml:2:3: missing-key: hook 't' needs 'secret_env'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_examples_load() -> None:
    from runner.runs.notify import load_config

    examples = ROOT / "examples" / "intake"
    hooks = load_hooks(examples / "hooks.yaml", env={"SUPPORT_HOOK_SECRET": "x" * 32})
    hook = hooks.hooks["support-refund"]
    assert hook.delivery_id == "/event_id" and hook.responses is not None
    config = load_config(
        examples / "notify.yaml",
        env={
            "SLACK_APPROVALS_URL": "https://hooks.slack.com/services/T/B/X",
            "AUDIT_HOOK_SECRET": "y" * 32,
        },
    )
    assert [t.name for t in config.targets] == ["slack", "audit"]
