"""`flowrun users add/list/revoke`: the token on stdout alone and once, exit codes, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.runs.identity import Directory, token_hash

ROOT = Path(__file__).resolve().parents[2]


def users(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "users", *args, "--store", str(store)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_add_list_revoke(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    added = users(store, "add", "bot", "--client", "--scope", "kb:read", "--scope",
                  "refunds:read,kb:read", "--tenant", "acme", "--live")  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("fr_") and "\n" not in token and "shown once" in added.stderr
    assert token not in store.read_bytes().decode("latin-1")
    who = Directory(store).authenticate(token)
    assert who is not None and who.scopes == ("kb:read", "refunds:read") and who.live
    listed = users(store, "list", "--output", "json")
    assert listed.returncode == 0
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "bot" and row["kind"] == "client" and row["revoked_at"] is None
    assert token not in listed.stdout and token_hash(token) not in listed.stdout
    again = users(store, "add", "bot")
    assert again.returncode == 2 and "already exists" in again.stderr and again.stdout == ""
    assert users(store, "add", "x y").returncode == 2
    # the console's shared token acts under this name: nobody else may hold it
    reserved = users(store, "add", "shared-console-token", "--role", "operator")
    assert reserved.returncode == 2 and "reserved" in reserved.stderr
    assert users(store, "add", "x", "--role", "a b").returncode == 2
    assert users(store, "revoke", "bot").returncode == 0
    assert Directory(store).authenticate(token) is None
    twice = users(store, "revoke", "bot")
    assert twice.returncode == 2 and "already revoked" in twice.stderr
    assert "revoked" in users(store, "list").stdout
    for p in (added, again, twice):
        assert "Traceback" not in p.stderr


def test_print_stores_nothing_and_gives_an_entry_for_a_file(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    printed = users(store, "add", "ci", "--client", "--scope", "kb:read", "--print")
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    entry = json.loads(printed.stderr.splitlines()[-1].removeprefix("- "))
    assert entry["token_sha256"] == token_hash(token) and entry["scopes"] == ["kb:read"]
    assert not store.exists()
    listed = users(store, "list")
    assert listed.returncode == 2 and "no run store" in listed.stderr
