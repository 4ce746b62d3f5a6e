"""`flowrun serve`: the web console for approvers and operators, over the run store."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import click

from runner.errors import UsageError


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    help="login token (default: $FLOWRUN_CONSOLE_TOKEN, else one is generated and printed)",
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
    mermaid_path: str | None,
    hooks_path: str | None = None,
) -> None:
    """Serve the web console: approval inbox, runs and their graphs, kill switch, stats.

    Every page needs the token; state changes are POST forms with a CSRF token.
    """
    import uvicorn

    from runner.store import is_url, open_store, store_target
    from runner.web import ConsoleConfig, create_app

    hooks = None
    if hooks_path:
        from runner.intake_cli import load_hook_file

        hooks = load_hook_file(hooks_path)
    target = store_target(store_opt)
    open_store(target, create=False).close()  # a clear error now, not on the first page
    mermaid = None
    if mermaid_path:
        mermaid = Path(mermaid_path).resolve()
        if not mermaid.is_file() or mermaid.suffix != ".mjs":
            raise UsageError(
                f"--mermaid: {mermaid_path!r} is not a mermaid ESM file",
                hint="point it at mermaid/dist/mermaid.esm.min.mjs, or leave it out to show "
                "the mermaid text",
            )
    if token is not None and len(token) < 8:
        raise UsageError("--token: use at least 8 characters")
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    if not _loopback(host):
        click.echo(
            f"warning: serving on {host}: anyone who can reach it and has the token can approve "
            "and kill runs; put TLS in front of it",
            err=True,
        )
    config = ConsoleConfig(
        store_path=target if is_url(target) else str(Path(target).resolve()),
        token=token,
        mermaid=mermaid,
        env=None,
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if port == 0:
        port = _free_port(host)
    url = f"http://{shown}:{port}/login"
    if generated:
        click.echo(f"flowrun console: {url}?token={token}", err=True)
    else:
        click.echo(f"flowrun console: {url}", err=True)
    app = create_app(config)
    if hooks is not None:
        from runner.web.hooks import HooksApp

        hooks_app = HooksApp(hooks, str(config.store_path))
        app = hooks_app.mount_over(app)
    from runner.intake_cli import drain, start_notifier

    notifier = start_notifier(str(config.store_path))
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
