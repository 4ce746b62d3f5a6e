"""`flowrun serve`: the web console for approvers and operators, over the run store."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from runner.errors import UsageError
from runner.options import not_empty


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
@click.option(
    "--token",
    envvar="FLOWRUN_CONSOLE_TOKEN",
    help="a shared login token, loopback only (default: $FLOWRUN_CONSOLE_TOKEN; without users "
    "one is generated and printed)",
)
@click.option(
    "--identities",
    "identities_path",
    metavar="FILE",
    help="an identities file (docs/identities.md), besides the store's users",
)
@click.option(
    "--oidc-issuer",
    metavar="URL",
    help="also sign people in through this OpenID Connect provider (its issuer URL)",
)
@click.option("--oidc-client-id", metavar="ID", help="this console's client id at the provider")
@click.option(
    "--oidc-claim",
    default="email",
    callback=not_empty,
    show_default=True,
    help="the ID token claim that names the flowrun user",
)
@click.option(
    "--oidc-redirect-uri",
    metavar="URL",
    help="the callback URL registered at the provider (default: this console's /oidc/callback)",
)
@click.option(
    "--mermaid",
    "mermaid_path",
    envvar="FLOWRUN_CONSOLE_MERMAID",
    metavar="FILE",
    help="a local mermaid.esm.min.mjs to draw run graphs (default: $FLOWRUN_CONSOLE_MERMAID)",
)
@click.option(
    "--hooks",
    "hooks_path",
    envvar="FLOWRUN_HOOKS",
    metavar="FILE",
    help="also start runs from the signed webhooks of FILE at /hooks/NAME (docs/intake.md)",
)
def serve(
    host: str,
    port: int,
    store_opt: str | None,
    token: str | None,
    identities_path: str | None,
    oidc_issuer: str | None,
    oidc_client_id: str | None,
    oidc_claim: str,
    oidc_redirect_uri: str | None,
    mermaid_path: str | None,
    hooks_path: str | None = None,
) -> None:
    """Serve the web console: approval inbox, runs and their graphs, kill switch, stats.

    Every page needs a login: a personal token (`flowrun users add`, or an identities file),
    or on loopback a shared token, or an OpenID Connect provider (--oidc-issuer; the client
    secret from $FLOWRUN_OIDC_CLIENT_SECRET) vouching for a flowrun user. State changes are POST
    forms with a CSRF token.
    """
    import uvicorn

    from runner.options import listen
    from runner.runs.identity import Directory
    from runner.runs.identity import loopback as identity_loopback
    from runner.store import is_url, open_store, store_target
    from runner.web import ConsoleConfig, create_app

    hooks = None
    if hooks_path:
        from runner.intake_cli import load_hook_file

        hooks = load_hook_file(hooks_path)
    target = store_target(store_opt)
    open_store(target, create=False).close()  # a clear error now, not on the first page
    listen("--host", host, port)
    mermaid = None
    if mermaid_path:
        mermaid = Path(mermaid_path).resolve()
        if not mermaid.is_file() or mermaid.suffix != ".mjs":
            raise UsageError(
                f"--mermaid: {mermaid_path!r} is not a mermaid ESM file",
                hint="point it at mermaid/dist/mermaid.esm.min.mjs, or leave it out to show "
                "the mermaid text",
            )
    if token is not None and len(token.strip()) < 8:
        raise UsageError("--token: use at least 8 characters besides spaces")
    identities = Path(identities_path).resolve() if identities_path else None
    users = Directory(target, identities).configured()  # a bad identities file: exit 2 here
    loopback = identity_loopback(host)
    if token is not None and not loopback:
        raise UsageError(
            f"--host {host}: the shared console token (--token, FLOWRUN_CONSOLE_TOKEN) is "
            "accepted on loopback only",
            hint="log people in with personal tokens (flowrun users add NAME --role approver) "
            "and unset the shared token",
        )
    if not loopback and not users:
        raise UsageError(
            f"--host {host}: refusing to serve beyond loopback without authentication: the "
            "store has no users and no --identities file was given",
            hint="add users (flowrun users add NAME --role approver), or bind 127.0.0.1",
        )
    generated = token is None and not users
    if generated:
        token = secrets.token_urlsafe(24)
    if not loopback:
        click.echo(
            f"warning: serving on {host}: put TLS in front of it (tokens and cookies travel "
            "with every request)",
            err=True,
        )
    oidc = None
    if oidc_issuer or oidc_client_id:
        import os

        from runner.web.oidc import OidcConfig

        if not (oidc_issuer and oidc_client_id):
            raise UsageError("--oidc-issuer and --oidc-client-id go together")
        for flag, url in (
            ("--oidc-issuer", oidc_issuer),
            ("--oidc-redirect-uri", oidc_redirect_uri),
        ):
            if url is not None and not url.startswith(("https://", "http://")):
                raise UsageError(f"{flag}: {url!r} is not an http(s) URL")
        oidc = OidcConfig(
            issuer=oidc_issuer,
            client_id=oidc_client_id,
            client_secret=os.environ.get("FLOWRUN_OIDC_CLIENT_SECRET") or None,
            claim=oidc_claim,
            redirect_uri=oidc_redirect_uri,
        )
    config = ConsoleConfig(
        store_path=target if is_url(target) else str(Path(target).resolve()),
        token=token,
        mermaid=mermaid,
        env=None,
        identities=identities,
        oidc=oidc,
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if port == 0:
        port = _free_port(host)
    url = f"http://{shown}:{port}/login"
    app = create_app(config)
    if hooks is not None:
        from runner.web.hooks import HooksApp

        hooks_app = HooksApp(hooks, str(config.store_path), identities=identities)
        app = hooks_app.mount_over(app)
    from runner.intake_cli import drain, start_notifier

    notifier = start_notifier(str(config.store_path))  # a bad notify file: exit 2, no URL shown
    if generated:
        click.echo(f"flowrun console: {url}?token={token}", err=True)
    else:
        click.echo(f"flowrun console: {url}", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if notifier is not None:
            notifier.stop()
        if hooks is not None:
            drain(hooks_app.intake)
    from runner.runs import end_process

    end_process(0)  # the console may have woken Temporal runs through a client (issue 10)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


WEB_COMMANDS: tuple[click.Command, ...] = (serve,)
