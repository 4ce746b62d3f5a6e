"""`flowrun intake`: serve the webhooks of a hooks file alone (no console), over the run store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from runner.errors import FlowrunError


def load_hook_file(path: str) -> Any:
    """The checked hooks file, or exit 2 with its diagnostics (nothing served)."""
    from runner.web.hookfile import load_hooks

    try:
        return load_hooks(path)
    except FlowrunError as e:
        from runner.redact import echo_error

        echo_error(e)
        sys.exit(e.exit_code)


@click.command()
@click.option("--hooks", "hooks_path", required=True, metavar="FILE", help="the hooks file")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True)
@click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
@click.option(
    "--identities",
    "identities_path",
    type=click.Path(exists=True, dir_okay=False),
    help="an identities file (docs/identities.md) for hooks that act as a client",
)
def intake(
    hooks_path: str, host: str, port: int, store_opt: str | None, identities_path: str | None
) -> None:
    """Start runs from signed webhooks: POST /hooks/NAME (see docs/intake.md).

    Each delivery is checked (size, HMAC signature and timestamp, rate, input schema),
    recorded once by its delivery id, and answered 202 with the run id while the run goes on.
    """
    import uvicorn

    from runner.options import listen, store_folder
    from runner.runs.identity import Directory
    from runner.store import is_url, open_store, store_target
    from runner.web.hooks import standalone

    hooks = load_hook_file(hooks_path)
    target = store_target(store_opt)
    identities = Path(identities_path).resolve() if identities_path else None
    if identities is not None:
        try:
            Directory(target, identities)  # a bad identities file: exit 2 before serving
        except FlowrunError as e:
            from runner.redact import echo_error

            echo_error(e)
            sys.exit(e.exit_code)
    store_folder(store_opt)
    listen("--host", host, port)
    open_store(target, create=True).close()
    if not is_url(target):
        target = str(Path(target).resolve())
    if port == 0:
        import socket

        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
    from runner.runs.intake import Intake

    intake = Intake(target)
    notifier = start_notifier(target)  # a bad notify file: exit 2 before "serving" is shown
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(
            f"warning: serving on {host}: bodies and signatures travel in clear without TLS; "
            "put TLS in front of it",
            err=True,
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    names = ", ".join(sorted(hooks.hooks))
    click.echo(f"flowrun intake: http://{shown}:{port}/hooks/ ({names})", err=True)
    try:
        uvicorn.run(
            standalone(hooks, target, intake, identities),
            host=host,
            port=port,
            log_level="warning",
        )
    finally:
        if notifier is not None:
            notifier.stop()
        drain(intake)


DRAIN_S = 30.0


def drain(intake: Any) -> None:
    """Give the runs a stopping server started a moment to end or park."""
    left = intake.drain(DRAIN_S)
    if left:
        click.echo(
            f"warning: {left} run(s) started by webhooks still going; they stay running and "
            "`flowrun resume RUN_ID` continues them",
            err=True,
        )


def start_notifier(target: str) -> Any:
    """Approval notices in the background when a notify file applies (runner/runs/notify.py);
    a broken file stops the server with its diagnostics (exit 2)."""
    from runner.runs.notify import Notifier

    try:
        return Notifier.start_if_configured(target)
    except FlowrunError as e:
        from runner.redact import echo_error

        echo_error(e)
        sys.exit(e.exit_code)
