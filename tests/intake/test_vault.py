"""Full transcripts: unreadable at rest without the vault key, shown with it, every read on
record."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.runs import Runs
from runner.trace.vault import VaultKeys
from tests.durable.conftest import process_env
from tests.intake.conftest import OLD_SECRET, ROOT, SECRET, wait_for
from tests.intake.test_hooks import status_of

SPEC = ROOT / "tests" / "intake" / "specs" / "custody.yaml"
RESPONSES = ROOT / "tests" / "intake" / "specs" / "custody.jsonl"
CARD = "4242 4242 4242 4242"
API_KEY = "sk-proj-Zq8vN2xR7tLm4KpW9sYb3HcJ6dFg1AeU5oQi"  # the one the recorded answer repeats
INPUT = {"note": "order O-1", "card": CARD, "api_key": API_KEY}
K1 = VaultKeys.new_key("k1")
K2 = VaultKeys.new_key("k2")
HOOK_SECRETS = {"TICKET_HOOK_SECRET": SECRET, "TICKET_HOOK_SECRET_OLD": OLD_SECRET}

pytestmark = pytest.mark.slow  # each run imports litellm in a process of its own


def flowrun(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = process_env(tmp_path / "data", FLOWRUN_VAULT_KEY=K1)
    (tmp_path / "store").mkdir(mode=0o700)  # a store is made only in a folder that exists
    e["FLOWRUN_STORE"] = str(tmp_path / "store" / "flowrun.db")
    e.pop("FLOWRUN_VAULT_KEY_FILE", None)
    return e


def execute(env: dict[str, str], run_id: str) -> None:
    proc = flowrun(
        env,
        "execute",
        str(SPEC),
        "--input-json",
        json.dumps(INPUT),
        "--responses",
        str(RESPONSES),
        "--run-id",
        run_id,
    )
    assert proc.returncode == 0, proc.stderr


def clear_in(folder: Path) -> list[str]:
    """Every file under `folder` whose bytes hold the card or the key in clear."""
    needles = [
        CARD.encode(),
        CARD.replace(" ", "").encode(),
        API_KEY.encode(),
        API_KEY[8:30].encode(),  # a good part of the key, in case it were cut or escaped
    ]
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def test_secrets_of_an_input_are_nowhere_in_clear_yet_show_full_shows_them(
    env: dict[str, str],
) -> None:
    execute(env, "v1")
    store = Path(env["FLOWRUN_STORE"]).parent
    files = sorted(p.name for p in (store / "transcripts").iterdir())
    assert files == ["v1.jsonl", "v1.vault"]
    assert clear_in(store) == []
    for p in (store / "transcripts").iterdir():
        assert p.stat().st_mode & 0o077 == 0  # owner only
    # without the key: refused, nothing shown, nothing recorded
    no_key = {k: v for k, v in env.items() if k != "FLOWRUN_VAULT_KEY"}
    proc = flowrun(no_key, "show", "v1", "--full", "--reason", "dispute 1182")
    assert proc.returncode == 2
    assert "needs the vault key" in proc.stderr and API_KEY not in proc.stdout + proc.stderr
    # without a reason: refused
    proc = flowrun(env, "show", "v1", "--full")
    assert proc.returncode == 2 and "--reason is required" in proc.stderr
    # a wrong key: refused
    proc = flowrun({**env, "FLOWRUN_VAULT_KEY": K1[:3] + K2[3:]}, "show", "v1", "--full",
                   "--reason", "x")  # fmt: skip
    assert proc.returncode == 2 and "does not open" in proc.stderr
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        assert r.store.events("v1", "transcript_read") == []
    # with the key and a reason: the run as it was
    proc = flowrun(env, "show", "v1", "--full", "--reason", "dispute 1182", "--by", "auditor@acme")
    assert proc.returncode == 0, proc.stderr
    assert CARD in proc.stdout and API_KEY in proc.stdout
    lines = [
        json.loads(x)
        for x in flowrun(
            env, "show", "v1", "--full", "--reason", "export", "--output", "json"
        ).stdout.splitlines()
    ]
    events = [x["event"] for x in lines]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert lines[0]["inputs"] == INPUT
    tool = next(x for x in lines if x["event"] == "tool_call")
    assert tool["args"]["key"] == API_KEY and tool["result"]["key"] == API_KEY
    llm = next(x for x in lines if x["event"] == "llm_call")
    assert CARD in llm["messages"][-1]["content"] and API_KEY in llm["content"]
    # every read is on record, with who and why; the record holds no content
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        reads = [e["data"] for e in r.store.events("v1", "transcript_read")]
    assert (reads[0]["by"], reads[0]["reason"], reads[0]["via"]) == (
        "auditor@acme",
        "dispute 1182",
        "show",
    )
    assert reads[1]["reason"] == "export" and "@" in reads[1]["by"]
    # the normal show stays redacted, and the audit events did not put anything in clear
    shown = flowrun(env, "show", "v1")
    assert API_KEY not in shown.stdout and CARD not in shown.stdout
    assert clear_in(store) == []


def test_replay_full_reads_the_vault_with_a_reason(env: dict[str, str]) -> None:
    execute(env, "v2")
    # from the store's call records, whose secrets were redacted when recorded, the replayed
    # outputs differ from the run's; from the vault they are the run's own
    proc = flowrun(env, "replay", "v2")
    assert proc.returncode == 0 and "run outcome CHANGED" in proc.stdout, proc.stdout
    proc = flowrun(env, "replay", "v2", "--full", "--reason", "regression", "--by", "dev@acme")
    assert proc.returncode == 0, proc.stderr
    assert "= look" in proc.stdout and "= summarize" in proc.stdout
    assert "run outcome unchanged" in proc.stdout and API_KEY not in proc.stdout
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        (read,) = [e["data"] for e in r.store.events("v2", "transcript_read")]
    assert (read["by"], read["reason"], read["via"]) == ("dev@acme", "regression", "replay")


def test_no_key_no_vault(env: dict[str, str]) -> None:
    execute({k: v for k, v in env.items() if k != "FLOWRUN_VAULT_KEY"}, "v3")
    folder = Path(env["FLOWRUN_STORE"]).parent / "transcripts"
    assert sorted(p.name for p in folder.iterdir()) == ["v3.jsonl"]
    proc = flowrun(env, "show", "v3", "--full", "--reason", "x")
    assert proc.returncode == 2 and "has no full transcript" in proc.stderr


def test_rotation_by_key_id_and_rekey(env: dict[str, str], tmp_path: Path) -> None:
    execute(env, "v4")
    both = {**env, "FLOWRUN_VAULT_KEY": f"{K2},{K1}"}
    execute(both, "v5")  # written under k2
    for run_id in ("v4", "v5"):
        assert flowrun(both, "show", run_id, "--full", "--reason", "r").returncode == 0
    only_new = {**env, "FLOWRUN_VAULT_KEY": K2}
    proc = flowrun(only_new, "show", "v4", "--full", "--reason", "r")
    assert proc.returncode == 2 and "sealed with key 'k1'" in proc.stderr
    proc = flowrun(both, "vault", "rekey", "--all")
    assert proc.returncode == 0, proc.stderr
    assert "v4: 8 lines, 8 moved to key 'k2'" in proc.stdout
    vault = Path(env["FLOWRUN_STORE"]).parent / "transcripts" / "v4.vault"
    assert {json.loads(x)["kid"] for x in vault.read_text().splitlines()} == {"k2"}
    proc = flowrun(only_new, "show", "v4", "--full", "--reason", "r")
    assert proc.returncode == 0 and API_KEY in proc.stdout
    # a key file instead of the variable: owner-only, one kid:key a line
    key_file = tmp_path / "vault.keys"
    key_file.write_text(f"# current first\n{K2}\n")
    os.chmod(key_file, 0o644)
    by_file = {k: v for k, v in env.items() if k != "FLOWRUN_VAULT_KEY"}
    by_file["FLOWRUN_VAULT_KEY_FILE"] = str(key_file)
    proc = flowrun(by_file, "show", "v4", "--full", "--reason", "r")
    assert proc.returncode == 2 and "chmod 600" in proc.stderr
    os.chmod(key_file, 0o600)
    assert flowrun(by_file, "show", "v4", "--full", "--reason", "r").returncode == 0


def test_a_changed_or_moved_line_does_not_open(env: dict[str, str]) -> None:
    execute(env, "v6")
    execute(env, "v7")
    folder = Path(env["FLOWRUN_STORE"]).parent / "transcripts"
    lines = (folder / "v6.vault").read_text().splitlines()
    first = json.loads(lines[0])
    ct = bytearray(base64.b64decode(first["c"]))
    ct[5] ^= 1
    first["c"] = base64.b64encode(bytes(ct)).decode()
    (folder / "v6.vault").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    proc = flowrun(env, "show", "v6", "--full", "--reason", "r")
    assert proc.returncode == 2 and "v6.vault:1: the line does not open" in proc.stderr
    # v7's lines in v6's file: bound to their run, they do not open there
    (folder / "v6.vault").write_text((folder / "v7.vault").read_text())
    proc = flowrun(env, "show", "v6", "--full", "--reason", "r")
    assert proc.returncode == 2 and "does not open" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_broken_vault_key_refuses_before_a_run_is_recorded(env: dict[str, str]) -> None:
    proc = flowrun(
        {**env, "FLOWRUN_VAULT_KEY": "k1:short"},
        "execute", str(SPEC), "--input-json", json.dumps(INPUT), "--responses",
        str(RESPONSES), "--run-id", "v8",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "FLOWRUN_VAULT_KEY: key 'k1' is not 32 bytes" in proc.stderr
    assert not Path(env["FLOWRUN_STORE"]).exists() or "v8" not in flowrun(env, "runs").stdout


def test_a_webhook_run_keeps_its_secrets_sealed_and_vaulted(serve: Any, tmp_path: Path) -> None:
    extra = f"""  custody:
    spec: {SPEC}
    secret_env: TICKET_HOOK_SECRET
    responses: {RESPONSES}
"""
    s = serve(command="intake", extra=extra, env_extra=HOOK_SECRETS)
    status, answer, _ = s.post("custody", json.dumps(INPUT).encode(), delivery="c-1")
    assert status == 202, answer
    run_id = answer["run_id"]
    assert wait_for(lambda: status_of(s, run_id) == "succeeded")
    s.proc.terminate()  # everything the server wrote is on disk
    s.proc.wait(timeout=20)
    assert clear_in(tmp_path) == []  # the store, its transcripts, the hooks file, the logs
    proc = flowrun(s.env, "show", run_id, "--full", "--reason", "chargeback", "--by", "a@b")
    assert proc.returncode == 0, proc.stderr
    assert CARD in proc.stdout and API_KEY in proc.stdout
