"""`flowrun tools lock` (record the MCP tools a spec uses) and `flowrun mcp serve` (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from runner.errors import ExitCode, SpecError, UsageError
from runner.options import not_empty


@click.group("tools")
def tools_group() -> None:
    """Tool contracts: lock what MCP servers say about the tools a spec uses."""


@tools_group.command("lock")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def lock_command(spec: str, fmt: str) -> None:
    """Connect to the spec's MCP servers and write <spec>.mcp.lock.json next to it.

    The lock records the input/output schemas and annotations of every MCP tool the spec uses,
    the spec's name and each server's identity; `flowrun validate` reads it offline. Review
    its diff like code: a changed schema or a tool that became destructive shows up there
    (and in `flowrun diff`).
    """
    from runner.mcp.lock import lock_path, read_lock, used_tools, write_lock
    from runner.mcp.locking import make_lock
    from runner.spec import load_spec

    loaded = load_spec(spec)
    if not used_tools(loaded.spec):
        raise UsageError(
            f"{spec} uses no MCP tools; nothing to lock",
            hint="an MCP tool contract is {mcp: SERVER, tool: NAME} under `tools`",
        )
    lock, diags = asyncio.run(make_lock(loaded))
    if lock is None:
        raise SpecError(diags)
    path = lock_path(Path(spec))
    old = None
    if path.is_file():
        try:
            old = read_lock(path).to_json()
        except Exception:
            old = None
    write_lock(lock)
    n_tools = sum(len(s["tools"]) for s in lock.servers.values())
    changed = old is not None and old != lock.to_json()
    if fmt == "json":
        click.echo(json.dumps({"lock": str(path), "changed": changed, **lock.to_json()}, indent=2))
        return
    verb = "updated" if changed else ("unchanged" if old is not None else "wrote")
    click.echo(f"{verb} {path}: {n_tools} tool(s) from {len(lock.servers)} MCP server(s)")
    for server, entry in sorted(lock.servers.items()):
        from runner.mcp.lock import hints

        for tool, t in sorted(entry["tools"].items()):
            h = hints(t)
            effect = "read" if h["readOnlyHint"] else "write"
            flags = [effect] + (["destructive"] if h["destructiveHint"] else [])
            flags += ["idempotent"] if h["idempotentHint"] else []
            click.echo(f"  {server}.{tool}: {', '.join(flags)}")


def check_mcp(plan: Any) -> None:
    """`validate --check-mcp`: connect to the servers and fail when the lock is stale."""
    from runner.mcp.lock import lock_path, read_lock, used_tools
    from runner.mcp.locking import check_lock

    loaded = plan.loaded
    if not used_tools(loaded.spec):
        return
    lock = read_lock(lock_path(Path(loaded.path)))  # compile has checked it exists and matches
    diags = asyncio.run(check_lock(loaded, lock))
    if diags:
        raise SpecError(diags)


@click.group("mcp")
def mcp_group() -> None:
    """Serve workflows to MCP clients (each spec becomes one governed MCP tool)."""


@mcp_group.command("serve")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--stdio", "stdio", is_flag=True, help="speak MCP on stdin/stdout (the default)")
@click.option("--http", "http", metavar="HOST:PORT", help="serve streamable HTTP at /mcp")
@click.option("--profile", help="model routes to use (a name under `profiles`)")
@click.option("--responses", metavar="FILE", help="serve LLM calls from recorded responses")
@click.option(
    "--live",
    is_flag=True,
    help="perform write tools for real (default: dry-run); with client tokens, only in the "
    "runs of clients allowed live",
)
@click.option(
    "--scopes",
    metavar="A,B",
    default="",
    help="scopes every run holds; with client tokens, the most a client's grant may give",
)
@click.option(
    "--actor",
    callback=not_empty,
    help="who the runs act as (the policy principal; recorded); not with client tokens: each "
    "run acts as its client",
)
@click.option("--tenant", callback=not_empty, help="tenant the runs act for (recorded)")
@click.option(
    "--identities",
    "identities_path",
    metavar="FILE",
    help="an identities file (docs/identities.md), besides the store's users (--http only)",
)
@click.option(
    "--store", "store_opt", metavar="PATH", help="run store (default: $FLOWRUN_STORE or .flowrun)"
)
@click.option(
    "--operate",
    is_flag=True,
    help="also expose flowrun.approve, .reject, .kill and .undo on the store's runs",
)
def serve_command(
    specs: tuple[str, ...],
    stdio: bool,
    http: str | None,
    profile: str | None,
    responses: str | None,
    live: bool,
    scopes: str,
    actor: str | None,
    tenant: str | None,
    store_opt: str | None,
    operate: bool,
    identities_path: str | None,
) -> None:
    """Expose each SPEC as an MCP tool; every call is a normal, recorded flowrun run.

    The tool's input schema is the spec's `inputs`, its description the spec's metadata, its
    annotations what the spec can do (readOnly when it has no write tool, else destructive).
    Runs are dry-run unless --live; a run that waits for approval answers with its run id and
    status `waiting` (decide it with `flowrun approve`, or with the flowrun.approve tool that
    --operate adds: operations on runs, off by default so that agents cannot approve their own).
    """
    from runner.engine.context import Envelope
    from runner.mcp.serve import Served, serve_http, serve_stdio
    from runner.options import listen, store_folder
    from runner.runs.identity import Directory, loopback
    from runner.store import store_target

    if stdio and http:
        raise UsageError("give --stdio or --http, not both")
    store_folder(store_opt)  # the runs' store is made on the first call: say it cannot be now
    host, port = "127.0.0.1", 0
    if http is not None:
        h, _, p = http.rpartition(":")
        if not h or not p.isdigit() or not 0 < int(p) < 65536:
            raise UsageError(f"--http {http!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
        host, port = h, int(p)
        listen("--http", host, port)
    directory = None
    if http is None:
        if identities_path:
            raise UsageError("--identities is for --http: a stdio server is local to its client")
    else:
        directory = Directory(store_target(store_opt), identities_path)  # bad file: exit 2
        if not directory.configured():
            if not loopback(host):
                raise UsageError(
                    f"--http {http}: refusing to serve beyond loopback without authentication: "
                    "no clients in the store and no --identities file",
                    hint="add a client (flowrun users add NAME --client --scope S), or bind "
                    "127.0.0.1",
                )
            click.echo(
                "warning: no clients are known, so requests are not authenticated (loopback "
                "only); add one with `flowrun users add NAME --client` to require tokens",
                err=True,
            )
            directory = None
        elif actor is not None:
            raise UsageError(
                "--actor: with client tokens each run acts as the client that started it",
                hint="leave --actor out",
            )
    served = Served.load(
        list(specs),
        profile=profile,
        responses=responses,
        envelope=Envelope(
            live=live,
            scopes=tuple(s.strip() for s in scopes.split(",") if s.strip()),
            actor=actor,
            tenant=tenant,
        ),
        store=store_opt,
        operate=operate,
    )
    served.directory = directory
    if http is not None:
        how = "bearer tokens required" if directory is not None else "unauthenticated"
        click.echo(
            f"flowrun MCP server: http://{host}:{port}/mcp ({served.names()}; {how})", err=True
        )
        serve_http(served, host, port)
    else:
        serve_stdio(served)
    from runner.runs import end_process

    end_process(ExitCode.SUCCEEDED)  # after operating Temporal runs through a client (issue 10)
    sys.exit(ExitCode.SUCCEEDED)


MCP_COMMANDS = (tools_group, mcp_group)
