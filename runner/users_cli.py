"""`flowrun users add/list/revoke`: the people and clients who may act (docs/identities.md)."""

from __future__ import annotations

import getpass
import json
import time

import click

from runner.errors import UsageError
from runner.options import not_empty


def _store_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--store",
        "store_opt",
        metavar="PATH",
        help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
    )(f)


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@click.group("users")
def users() -> None:
    """Users (people at the console) and clients (MCP clients, webhook senders) with tokens."""


@users.command("add")
@click.argument("name")
@click.option("--client", "is_client", is_flag=True, help="a client (MCP, webhook), not a person")
@click.option(
    "--role",
    "roles",
    multiple=True,
    callback=not_empty,
    metavar="ROLE[,ROLE]",
    help="approver, operator, or any role an approval's assignees name (repeatable)",
)
@click.option(
    "--tenant",
    "tenants",
    multiple=True,
    callback=not_empty,
    metavar="T[,T]",
    help="tenants it acts for, '*' for all (repeatable; a client's runs are for the first)",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    callback=not_empty,
    metavar="S[,S]",
    help="scopes it may grant the runs it starts (repeatable)",
)
@click.option("--live", is_flag=True, help="runs it starts may write for real")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="store nothing: print the token and an identities-file entry with its hash",
)
@_store_option
def add(
    name: str,
    is_client: bool,
    roles: tuple[str, ...],
    tenants: tuple[str, ...],
    scopes: tuple[str, ...],
    live: bool,
    print_only: bool,
    store_opt: str | None,
) -> None:
    """Add a user or client; its token is printed once (only its SHA-256 is kept).

    The token goes to stdout alone, so that `TOKEN=$(flowrun users add ...)` works; what it
    is goes to stderr.
    """
    from runner.runs.identity import (
        ROLE,
        add_identity,
        check_name,
        new_token,
        split_list,
        token_hash,
    )

    kind = "client" if is_client else "user"
    r, t, s = split_list(roles), split_list(tenants), split_list(scopes)
    if print_only:
        check_name(name)
        for role in r:
            if not ROLE.fullmatch(role):
                raise UsageError(f"--role: {role!r} is not a valid role name")
        token = new_token()
        entry = {
            "name": name,
            "kind": kind,
            "roles": list(r),
            "tenants": list(t),
            "scopes": list(s),
            "live": live,
            "token_sha256": token_hash(token),
        }
        click.echo(token)
        click.echo("# an entry for the identities file (under `identities:`):", err=True)
        click.echo("- " + json.dumps(entry), err=True)
        return
    from runner.options import store_folder
    from runner.store import open_store

    store_folder(store_opt)
    store = open_store(store_opt, create=True)
    try:
        token = add_identity(
            store, name, kind=kind, roles=r, tenants=t, scopes=s, live=live, by=_who()
        )
    finally:
        store.close()
    click.echo(token)
    click.echo(
        f"added {kind} {name!r}; the token above is shown once (only its hash is stored)",
        err=True,
    )


@users.command("list")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@_store_option
def list_command(fmt: str, store_opt: str | None) -> None:
    """List users and clients (revoked ones too); tokens are never shown."""
    from runner.store import open_store

    store = open_store(store_opt, create=False)
    try:
        rows = store.identities()
    finally:
        store.close()
    if fmt == "json":
        keep = ("name", "kind", "roles", "tenants", "scopes", "live", "created_at", "created_by",
                "revoked_at", "revoked_by")  # fmt: skip
        click.echo(json.dumps([{k: r.get(k) for k in keep} for r in rows], indent=2))
        return
    if not rows:
        click.echo("no users or clients; add one with `flowrun users add NAME --role approver`")
        return
    for r in rows:
        state = (
            "revoked " + time.strftime("%Y-%m-%d %H:%M", time.localtime(r["revoked_at"]))
            if r.get("revoked_at")
            else "active"
        )
        click.echo(
            f"{r['name']}  {r['kind']}  {state}  roles={','.join(r['roles']) or '-'}  "
            f"tenants={','.join(r['tenants']) or '-'}  scopes={','.join(r['scopes']) or '-'}  "
            f"live={'yes' if r['live'] else 'no'}"
        )


@users.command("revoke")
@click.argument("name")
@_store_option
def revoke(name: str, store_opt: str | None) -> None:
    """Revoke a user or client: its token and console sessions stop working at once."""
    from runner.runs.identity import revoke_identity
    from runner.store import open_store

    store = open_store(store_opt, create=False)
    try:
        revoke_identity(store, name, by=_who())
    finally:
        store.close()
    click.echo(f"revoked {name!r}")
