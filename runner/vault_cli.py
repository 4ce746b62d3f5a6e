"""`flowrun vault` (keygen, rekey) and the full-transcript reads of `show --full` and
`replay --full`: each read needs the vault key and a reason, and is recorded first."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Any

import click

from runner.errors import UsageError


def who(by: str | None) -> str:
    """The reader on record: --by, else the OS user at this host."""
    if by and by.strip():
        return by.strip()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def read_full(
    runs: Any, run_id: str, *, reason: str | None, by: str | None, how: str
) -> list[dict[str, Any]]:
    """The run's full transcript, opened with the vault key, after an audit event records who
    reads it and why (nothing is shown if that cannot be recorded)."""
    from runner.trace.observe import transcript_path
    from runner.trace.vault import read_vault, require_keys, vault_path

    if not reason or not reason.strip():
        raise UsageError(
            "--reason is required to read a full transcript: it is recorded with who read it"
        )
    keys = require_keys()
    row = runs.get(run_id)
    path = vault_path(transcript_path(runs.store.path, row.run_id))
    lines = list(read_vault(path, row.run_id, keys))
    runs.event(
        row.run_id,
        "transcript_read",
        by=who(by),
        reason=reason.strip(),
        via=how,
        lines=len(lines),
    )
    runs.store.flush()
    return lines


def render_full(lines: list[dict[str, Any]]) -> str:
    """One line per transcript line: its event, node, then its content as JSON."""
    out = []
    for line in lines:
        rest = {k: v for k, v in line.items() if k not in ("ts", "event", "run_id", "node_id")}
        node = f" {line['node_id']}" if line.get("node_id") else ""
        out.append(
            f"{line['event']}{node}: "
            + json.dumps(rest, sort_keys=True, ensure_ascii=False, default=str)
        )
    return "\n".join(out)


def show_full(runs: Any, run_id: str, *, reason: str | None, by: str | None, fmt: str) -> None:
    """`flowrun show --full`: printed as it was, never redacted (that is what was asked for)."""
    lines = read_full(runs, run_id, reason=reason, by=by, how="show")
    if fmt == "json":
        for line in lines:
            click.echo(json.dumps(line, sort_keys=True, ensure_ascii=False, default=str))
    else:
        click.echo(render_full(lines))


def calls_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model and tool calls of a full transcript, shaped as the store's call records."""
    out: list[dict[str, Any]] = []
    for line in lines:
        base = {
            "node_id": line.get("node_id"),
            "idx": line.get("index"),
            "attempt": line.get("attempt", 1),
            "error": line.get("error"),
        }
        if line["event"] == "llm_call":
            data: dict[str, Any] = {
                "model": line.get("model"),
                "response_model": line.get("response_model"),
                "usage": line.get("usage"),
                "cost_usd": line.get("cost_usd"),
                "captured": True,
                "messages": line.get("messages"),
            }
            if line.get("content") is not None:
                data["content"] = line["content"]
            out.append({**base, "kind": "llm", "name": line.get("model"), "data": data})
        elif line["event"] == "tool_call":
            data = {
                "captured": True,
                "has_result": bool(line.get("has_result")),
                "args": line.get("args"),
            }
            if line.get("has_result"):
                data["result"] = line.get("result")
            out.append({**base, "kind": "tool", "name": line.get("tool"), "data": data})
    return out


@click.group("vault")
def vault_group() -> None:
    """The transcript vault: full transcripts encrypted at rest (docs/intake.md)."""


@vault_group.command()
@click.option("--kid", default=None, help="the key id (default: today's date, UTC)")
def keygen(kid: str | None) -> None:
    """Print a new vault key `kid:key`: put it first in FLOWRUN_VAULT_KEY (or the key file)."""
    import time

    from runner.trace.vault import VaultKeys

    click.echo(VaultKeys.new_key(kid or time.strftime("%Y%m%d", time.gmtime())))


@vault_group.command()
@click.argument("run_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every run's vault in the store")
@click.option("--store", "store_opt", metavar="PATH", help="run store")
def rekey(run_ids: tuple[str, ...], every: bool, store_opt: str | None) -> None:
    """Seal full transcripts again under the current (first) key, after a rotation.

    Runs still running are skipped (their vault is being appended to); the keys they were
    sealed with must still be configured after the first one."""
    from runner.runs import Runs
    from runner.trace.observe import transcript_path
    from runner.trace.vault import SUFFIX, require_keys, vault_path
    from runner.trace.vault import rekey as rekey_file

    if bool(run_ids) == every:
        raise UsageError("name the runs to rekey, or --all")
    keys = require_keys()
    runs = Runs.open(store_opt)
    try:
        folder = transcript_path(runs.store.path, "x").parent
        ids = list(run_ids) or sorted(p.name[: -len(SUFFIX)] for p in folder.glob("*" + SUFFIX))
        for run_id in ids:
            row = runs.get(run_id)
            if row.status == "running":
                click.echo(f"{run_id}: skipped (running)", err=True)
                continue
            path = vault_path(transcript_path(runs.store.path, run_id))
            if not Path(path).exists():
                click.echo(f"{run_id}: no full transcript", err=True)
                continue
            n, old = rekey_file(path, run_id, keys)
            click.echo(f"{run_id}: {n} lines, {old} moved to key {keys.current!r}")
    finally:
        runs.close()


VAULT_COMMANDS: tuple[click.Command, ...] = (vault_group,)
