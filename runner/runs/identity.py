"""Who may act: users and clients with tokens, roles, tenants, scopes and a live permission.

Every entry point that acts for someone (the console, MCP over HTTP, webhook intake) asks this
module two questions: who holds this token (`Directory.authenticate`, read from the store or an
identities file on every request, so a revocation counts at once), and may they do this
(`Gate`: approvals bound to assignees, separation of duties, the operator role, tenants; every
answer, yes or no, is an audit event naming the identity). docs/identities.md.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import Diagnostic, ExitCode, FlowrunError, SpecError, UsageError
from runner.store import Store

APPROVER = "approver"  # may decide approvals that name no assignees
OPERATOR = "operator"  # may kill, undo, and flip the writes switch
ALL_TENANTS = "*"
SHARED = "shared-console-token"  # the identity of the console's loopback-only shared token
TOKEN_PREFIX = "fr_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
Kind = Literal["user", "client"]


class Forbidden(FlowrunError):
    """An authenticated identity asked for something it may not do (HTTP 403, exit 5)."""

    exit_code = ExitCode.DENIED


@dataclass(frozen=True, kw_only=True)
class Identity:
    """A user (a person at the console) or a client (an MCP client, a webhook sender)."""

    name: str
    kind: str  # user | client | shared (the console's shared token)
    roles: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()  # "*": every tenant
    scopes: tuple[str, ...] = ()  # the most a run started by it may hold
    live: bool = False  # runs it starts may write for real
    source: str = "store"  # store | an identities file | the console's shared token

    def has(self, role: str) -> bool:
        return role in self.roles

    def for_tenant(self, tenant: str | None) -> bool:
        """Runs without a tenant are everyone's; a tenant's runs only its members'."""
        return tenant is None or ALL_TENANTS in self.tenants or tenant in self.tenants

    @property
    def home_tenant(self) -> str | None:
        """The tenant runs it starts are recorded for: the first one listed ("*": none)."""
        first = self.tenants[0] if self.tenants else None
        return None if first == ALL_TENANTS else first

    def audit(self) -> dict[str, Any]:
        return {"identity": self.name, "kind": self.kind, "source": self.source}


SHARED_IDENTITY = Identity(
    name=SHARED,
    kind="shared",
    roles=(APPROVER, OPERATOR),
    tenants=(ALL_TENANTS,),
    source="console token",
)


def loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- tokens ----------------------------------------------------------------------------------
def new_token() -> str:
    """A personal token: 32 random bytes, URL-safe, shown once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256 (a token is random, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _of_row(row: dict[str, Any], source: str) -> Identity:
    return Identity(
        name=row["name"],
        kind=row["kind"],
        roles=tuple(row.get("roles") or ()),
        tenants=tuple(row.get("tenants") or ()),
        scopes=tuple(row.get("scopes") or ()),
        live=bool(row.get("live")),
        source=source,
    )


def check_name(name: str, what: str = "name") -> str:
    if name == SHARED:
        raise UsageError(f"{what}: {name!r} is reserved for the console's shared token")
    if not NAME.fullmatch(name):
        raise UsageError(
            f"{what}: {name!r} is not a valid identity name",
            hint="use letters, digits, '.', '_', '@', '+' and '-' (at most 128), starting "
            "with a letter or digit",
        )
    return name


def split_list(values: Iterable[str]) -> tuple[str, ...]:
    """`--role a,b --role c` → (a, b, c), in order, each once."""
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


# -- the store's identities ------------------------------------------------------------------
def add_identity(
    store: Store,
    name: str,
    *,
    kind: str,
    roles: Sequence[str] = (),
    tenants: Sequence[str] = (),
    scopes: Sequence[str] = (),
    live: bool = False,
    by: str | None = None,
) -> str:
    """Record a user or client; returns its token (shown once: only its hash is stored)."""
    from runner.store import DuplicateRun

    check_name(name)
    if kind not in ("user", "client"):
        raise UsageError(f"kind {kind!r}: use user or client")
    for role in roles:
        if not ROLE.fullmatch(role):
            raise UsageError(f"--role: {role!r} is not a valid role name")
    token = new_token()
    try:
        store.identity_add(
            name,
            kind=kind,
            roles=list(roles),
            tenants=list(tenants),
            scopes=list(scopes),
            live=live,
            token_sha256=token_hash(token),
            by=by,
        )
    except DuplicateRun:
        old = store.identity_get(name)
        revoked = old is not None and old.get("revoked_at") is not None
        raise UsageError(
            f"an identity named {name!r} already exists" + (" (revoked)" if revoked else ""),
            hint="names stay unique in the audit trail; choose another name",
        ) from None
    return token


def revoke_identity(store: Store, name: str, by: str | None = None) -> None:
    if not store.identity_revoke(name, by):
        row = store.identity_get(name)
        if row is None:
            known = [r["name"] for r in store.identities()]
            near = difflib.get_close_matches(name, known, n=1)
            raise UsageError(
                f"no identity named {name!r}",
                hint=f"did you mean {near[0]!r}?" if near else "see `flowrun users list`",
            )
        raise UsageError(f"{name!r} is already revoked")


# -- identities files ------------------------------------------------------------------------
class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern="^" + NAME.pattern + "$")
    kind: Kind = "user"
    roles: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    live: bool = False
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identities: list[_Entry]


@dataclass(frozen=True)
class _Known:
    identity: Identity
    token_sha256: str


def load_identities(path: str | Path) -> list[_Known]:
    """An identities file (YAML); every problem as `path:line:col: identities: message`."""
    from runner.spec.loader import Document, load_file

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--identities: no such file {str(path)!r}")
    if not p.is_file():
        raise UsageError(f"--identities: {str(path)!r} is not a regular file")
    try:
        src = load_file(p, what=Document("identities file", "identities"))
    except SpecError as e:
        raise SpecError(
            Diagnostic(
                file=d.file,
                line=d.line,
                col=d.col,
                rule="identities" if d.rule == "empty-spec" else d.rule,
                message="the file is empty: expected `identities:` and a list"
                if d.rule == "empty-spec"
                else d.message,
            )
            for d in e.diagnostics
        ) from None
    try:
        model = _File.model_validate(src.data)
    except ValidationError as e:
        diags = []
        for err in e.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            key = False
            if err["type"] == "extra_forbidden":
                msg, key = f"unknown key {loc[-1]!r}", True
            elif err["type"] == "missing":
                msg, loc = f"missing required key {loc[-1]!r}", loc[:-1]
            elif str(loc[-1]) == "name" and err["type"] == "string_pattern_mismatch":
                msg = (
                    "not a valid identity name: letters, digits, '.', '_', '@', '+' and '-', "
                    "starting with a letter or digit"
                )
            elif str(loc[-1]) == "token_sha256":
                msg = "token_sha256 must be 64 lowercase hex digits (`flowrun users add --print`)"
            diags.append(src.diag(loc, "identities", msg, key=key))
        raise SpecError(diags) from None
    out: list[_Known] = []
    seen: dict[str, int] = {}
    diags = []
    for i, entry in enumerate(model.identities):
        at = ("identities", i, "name")
        if entry.name in seen:
            line = src.pos(("identities", seen[entry.name], "name")).line
            diags.append(
                src.diag(at, "identities", f"{entry.name!r} is also defined at line {line}")
            )
            continue
        seen[entry.name] = i
        if entry.name == SHARED:
            diags.append(src.diag(at, "identities", f"{SHARED!r} is reserved"))
        for j, role in enumerate(entry.roles):
            if not ROLE.fullmatch(role):
                diags.append(
                    src.diag(("identities", i, "roles", j), "identities", f"bad role {role!r}")
                )
        out.append(
            _Known(
                Identity(
                    name=entry.name,
                    kind=entry.kind,
                    roles=tuple(entry.roles),
                    tenants=tuple(entry.tenants),
                    scopes=tuple(entry.scopes),
                    live=entry.live,
                    source=str(path),
                ),
                entry.token_sha256,
            )
        )
    if diags:
        raise SpecError(diags)
    return out


@dataclass
class _FileIdentities:
    """An identities file, read again whenever it changes: an entry removed is revoked at once.
    A file that stops parsing admits nobody until it is fixed (fail closed)."""

    path: Path
    known: list[_Known] = field(default_factory=list)
    stamp: tuple[float, int] | None = None

    def current(self) -> list[_Known]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                self.known = load_identities(self.path)
            except FlowrunError as e:
                self.known = []
                print(f"flowrun: identities file not usable, nobody admitted: {e.render()}",
                      file=sys.stderr)  # fmt: skip
        return self.known


class Directory:
    """Where identities come from: the run store (`flowrun users add`) and an identities file."""

    def __init__(self, store_target: str | os.PathLike[str], file: str | Path | None = None):
        self.store_target = store_target
        self.file = _FileIdentities(Path(file)) if file is not None else None
        if self.file is not None:
            self.file.known = load_identities(self.file.path)  # a bad file: exit 2 at start
            self.file.stamp = _stamp(self.file.path)

    def _open(self) -> Store | None:
        """The store, or None when its file does not exist yet (it has no users then)."""
        from runner.store import is_url, open_store

        if not is_url(self.store_target) and not Path(self.store_target).exists():
            return None
        return open_store(self.store_target, create=False)

    def configured(self) -> bool:
        """Whether any identity (revoked or not) is known: the console then wants personal
        tokens, and a server may listen beyond loopback."""
        if self.file is not None and self.file.current():
            return True
        store = self._open()
        if store is None:
            return False
        try:
            return bool(store.identities())
        finally:
            store.close()

    def authenticate(self, token: str, store: Store | None = None) -> Identity | None:
        """The identity that holds `token` now (a revoked one: None)."""
        if not token or len(token) > 512:
            return None
        digest = token_hash(token)
        if self.file is not None:
            for k in self.file.current():
                if _same(k.token_sha256, digest):
                    return k.identity
        own = store is None
        s = store or self._open()
        if s is None:
            return None
        try:
            row = s.identity_by_token(digest)
        finally:
            if own:
                s.close()
        if row is None or not _same(row["token_sha256"], digest):
            return None
        return _of_row(row, "store")

    def named(self, name: str, store: Store | None = None) -> Identity | None:
        """The unrevoked identity called `name` (a console session is re-checked with it)."""
        if self.file is not None:
            for k in self.file.current():
                if k.identity.name == name:
                    return k.identity
        own = store is None
        s = store or self._open()
        if s is None:
            return None
        try:
            row = s.identity_get(name)
        finally:
            if own:
                s.close()
        if row is None or row.get("revoked_at") is not None:
            return None
        return _of_row(row, "store")


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


# -- authorization ---------------------------------------------------------------------------
def grant(who: Identity, ceiling: Sequence[str], live_ceiling: bool) -> tuple[list[str], bool]:
    """What a run started by `who` holds: its scopes within the server's, live only when both
    the server and the identity allow it."""
    return [s for s in who.scopes if s in ceiling], live_ceiling and who.live


def hook_grant(
    who: Identity | None, name: str, tenant: str | None, scopes: Sequence[str], live: bool
) -> tuple[str | None, list[str], bool]:
    """What a run started by a webhook that acts as identity `name` holds: (tenant, scopes,
    live). The hook's tenant (else the identity's own), its scopes within the identity's, live
    only when both allow it; Forbidden when the identity is unknown, revoked or not of that
    tenant (checked on every delivery, so a revocation stops the hook at once)."""
    if who is None:
        raise Forbidden(
            f"the hook acts as {name!r}, which is not a known identity (or was revoked)",
            hint=f"flowrun users add {name} --client --scope ...",
        )
    run_tenant = tenant if tenant is not None else who.home_tenant
    if not who.for_tenant(run_tenant):
        raise Forbidden(f"{who.name!r} does not act for tenant {run_tenant!r}")
    granted, granted_live = grant(who, scopes, live)
    return run_tenant, granted, granted_live


def not_its_tenant(who: Identity, what: str) -> str:
    """Why `who` may not see or act on a run (or batch) of a tenant it does not act for,
    without naming that tenant: the refused caller learns nothing of where it belongs (the
    audit event names the run or batch)."""
    return f"{who.name!r} does not act for this {what}'s tenant"


def decision_refusal(
    who: Identity, run: Any, approval: dict[str, Any] | None
) -> tuple[str, str | None] | None:
    """Why `who` may not decide this approval (a reason and a hint), or None when it may."""
    if not who.for_tenant(run.tenant):
        return not_its_tenant(who, "run"), None
    if approval is None:
        return None  # nothing to decide: the caller's NotFound says so
    assignees = [str(a) for a in approval.get("assignees") or []]
    if assignees:
        if who.name not in assignees and not any(r in assignees for r in who.roles):
            hint = None
            if who.kind == "shared":
                hint = "assigned approvals need a personal login (flowrun users add)"
            return (
                f"{who.name!r} is not among the assignees of this approval "
                f"({', '.join(assignees)})",
                hint,
            )
    elif not who.has(APPROVER):
        return (
            f"{who.name!r} does not have the {APPROVER!r} role this approval needs",
            "give it the role (flowrun users add NAME --role approver), or name assignees",
        )
    if run.actor is not None and run.actor == who.name and not approval.get("allow_self"):
        return (
            f"{who.name!r} started this run and may not approve it (separation of duties)",
            "another assignee must decide; a spec can set allow_self_approval: true",
        )
    return None


def operation_refusal(who: Identity, run: Any | None, action: str) -> str | None:
    """Why `who` may not kill, undo or flip writes (None: it may)."""
    if not who.has(OPERATOR):
        return f"{who.name!r} does not have the {OPERATOR!r} role needed to {action}"
    if run is not None and not who.for_tenant(run.tenant):
        return not_its_tenant(who, "run")
    return None


def audit(
    store: Store,
    who: Identity,
    *,
    action: str,
    allowed: bool,
    run_id: str | None = None,
    node_id: str | None = None,
    via: str,
    reason: str | None = None,
) -> None:
    """One audit event per authorization answer: `access_allowed` or `access_refused`."""
    store.event(
        run_id or "*",
        "access_allowed" if allowed else "access_refused",
        node_id,
        action=action,
        via=via,
        reason=reason,
        **who.audit(),
    )
    store.flush()
