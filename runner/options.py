"""Checks of option values that several commands share: each bad value is a UsageError (exit 2)
naming the option and why, raised before anything is written."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import click

from runner.errors import UsageError


def since(text: str, option: str = "--since") -> float:
    """`parse_since` (30m, 24h, 7d ago, or an ISO date) as unix seconds, refusing a moment
    before 1970 or past the platform's clock range (a huge duration) rather than failing later."""
    from runner.trace.stats import parse_since

    try:
        when = parse_since(text)
        time.gmtime(when)  # the range every later use (dates shown, SQL bounds) needs
    except (OverflowError, OSError, ValueError):
        when = -1.0
    if not math.isfinite(when) or when < 0:
        raise UsageError(
            f"{option}: {text!r} reaches back before 1970",
            hint="give a duration such as 30m, 24h, 7d, or an ISO date such as 2025-01-31",
        )
    return when


def finite(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: a float option may not be NaN or infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number")
    return value


def not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: a text option, when given, is not empty (nor only commas and spaces)."""
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, str) and not v.replace(",", "").strip():
            raise click.BadParameter(f"{v!r} is empty")
    return value


def store_folder(store_opt: str | os.PathLike[str] | None, option: str = "--store") -> None:
    """A SQLite store named by --store or $FLOWRUN_STORE is created only in a folder that
    exists: a mistyped path would otherwise make folders and an empty store somewhere. The
    default .flowrun/flowrun.db makes its folder."""
    given = str(store_opt) if store_opt else os.environ.get("FLOWRUN_STORE")
    if not given:
        return
    if "://" in given:
        from runner.store import is_url

        if not is_url(given):
            where = option if store_opt else "FLOWRUN_STORE"
            raise UsageError(
                f"{where}: {given.split('://')[0]!r} is not a store URL",
                hint="a PostgreSQL URL (postgresql://user@host:port/db) or a file path",
            )
        return
    from runner.store.base import DEFAULT_STORE

    if Path(given) == Path(DEFAULT_STORE):
        return
    parent = Path(given).parent
    if not parent.is_dir():
        where = option if store_opt else "FLOWRUN_STORE"
        raise UsageError(
            f"{where}: no folder {str(parent)!r} for the store {given!r}",
            hint="create the folder first, or fix the path",
        )


def listen(option: str, host: str, port: int) -> None:
    """The address a server will listen on can be bound (before anything is opened or shown):
    an empty host (every interface), an unknown name or an address of no interface here is an
    error with its reason, not a server that stops later with another exit code."""
    if not host.strip():
        raise UsageError(f"{option}: give an address to listen on (an empty one means every one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except (OSError, UnicodeError, IndexError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"{option}: cannot listen on {host}:{port}: {reason}") from None
