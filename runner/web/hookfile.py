"""The hooks file: which workflow each webhook starts, how it is signed and limited, and how its
body becomes the run's inputs. Every problem is a diagnostic `path:line:col: rule-id: message`.

    hooks:
      new-ticket:                          # POST /hooks/new-ticket
        spec: specs/ticket_review.yaml     # relative to this file
        secret_env: TICKET_HOOK_SECRET     # or [NEW_NAME, OLD_NAME] while rotating
        tenant: acme
        inputs: {ticket_id: /ticket/id}    # input name -> JSON pointer into the body

Secrets are never in the file: only the names of the environment variables holding them.
docs/intake.md describes every key.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import Diagnostic, FlowrunError, SpecError
from runner.signing import DEFAULT_TOLERANCE_S

if TYPE_CHECKING:
    from runner.models.responses import RecordedResponses
    from runner.plan.model import Plan
    from runner.spec.loader import PathKey, Source

HOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIN_SECRET_CHARS = 16
DEFAULT_MAX_BODY = 1024 * 1024
MAX_MAX_BODY = 16 * 1024 * 1024
HOOK_KEYS = (
    "spec",
    "secret_env",
    "tenant",
    "inputs",
    "profile",
    "backend",
    "temporal",
    "live",
    "scopes",
    "responses",
    "max_body_bytes",
    "rate_limit",
    "tolerance_s",
    "max_concurrent_runs",
    "delivery_id",
    "identity",
)
TEMPORAL_KEYS = ("address", "namespace", "task_queue")
RATE_KEYS = ("requests", "per_s")


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_s: float


@dataclass(frozen=True)
class Hook:
    """One webhook: what it starts and what a request must satisfy first."""

    name: str
    plan: Plan
    secrets: tuple[str, ...]  # the current one first; a second during a rotation
    tenant: str | None = None
    inputs: dict[str, str] | None = None  # input name -> JSON pointer; None: the body itself
    profile: str | None = None
    backend: str = "local"
    temporal: dict[str, str] = field(default_factory=dict)
    live: bool = False
    scopes: tuple[str, ...] = ()
    responses: RecordedResponses | None = None
    responses_path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    rate_limit: RateLimit | None = None
    tolerance_s: float = DEFAULT_TOLERANCE_S
    max_concurrent_runs: int = 4
    delivery_id: str | None = None  # a JSON pointer into the (signed) body; None: the header
    identity: str | None = None  # the client (docs/identities.md) its runs act as


@dataclass(frozen=True)
class HookFile:
    path: str
    hooks: dict[str, Hook]

    @property
    def max_body_bytes(self) -> int:
        return max((h.max_body_bytes for h in self.hooks.values()), default=DEFAULT_MAX_BODY)


def parse_pointer(pointer: str) -> list[str] | None:
    """The reference tokens of an RFC 6901 JSON pointer, or None when it is not one."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        return None
    parts = pointer[1:].split("/")
    if any(re.search(r"~(?![01])", p) for p in parts):
        return None
    return [p.replace("~1", "/").replace("~0", "~") for p in parts]


def pointer_of(path: list[str | int] | tuple[str | int, ...]) -> str:
    """The JSON pointer of a path into a document."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


_MISSING = object()


def resolve(doc: Any, tokens: list[str]) -> Any:
    """The value a pointer's tokens reach in `doc`, or _MISSING."""
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                return _MISSING
            cur = cur[t]
        elif isinstance(cur, list):
            if not t.isdigit() or (t != "0" and t.startswith("0")) or int(t) >= len(cur):
                return _MISSING
            cur = cur[int(t)]
        else:
            return _MISSING
    return cur


def is_missing(value: Any) -> bool:
    return value is _MISSING


class _Checker:
    def __init__(self, src: Source, env: dict[str, str]) -> None:
        self.src = src
        self.env = env
        self.diags: list[Diagnostic] = []

    def err(
        self, path: PathKey, rule: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.diags.append(self.src.diag(path, rule, message, hint=hint, key=key))

    def keys(self, data: dict[str, Any], allowed: tuple[str, ...], at: PathKey) -> None:
        for k in data:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"did you mean {near[0]!r}?" if near else "keys: " + ", ".join(allowed)
                if k == "secret":
                    hint = "name the environment variable that holds it: secret_env: NAME"
                    self.err(
                        (*at, k),
                        "secret-in-file",
                        "a secret may not be written in the file",
                        hint,
                        key=True,
                    )
                    continue
                self.err((*at, k), "unknown-key", f"unknown key {k!r}", hint, key=True)


def load_hooks(path: str | Path, env: dict[str, str] | None = None) -> HookFile:
    """Read, check and compile a hooks file (every hook's spec too); SpecError lists every
    problem. `env` (default: the process environment) holds the secrets."""
    from runner.spec.loader import Document, load_file

    src = load_file(path, what=Document("hooks file", "hooks", "start from docs/intake.md"))
    c = _Checker(src, dict(os.environ) if env is None else env)
    data = src.data
    hooks: dict[str, Hook] = {}
    if not isinstance(data, dict):
        c.err((), "hooks-shape", "a hooks file is a mapping with a 'hooks' key")
        raise SpecError(c.diags)
    c.keys(data, ("hooks",), ())
    table = data.get("hooks")
    if not isinstance(table, dict) or not table:
        c.err(("hooks",), "hooks-shape", "'hooks' must map hook names to hooks")
        raise SpecError(c.diags)
    for name, raw in table.items():
        hook = _hook(c, Path(src.path).parent, str(name), raw)
        if hook is not None:
            hooks[hook.name] = hook
    if c.diags:
        raise SpecError(c.diags)
    return HookFile(path=src.path, hooks=hooks)


def _hook(c: _Checker, base: Path, name: str, raw: Any) -> Hook | None:
    at: PathKey = ("hooks", name)
    before = len(c.diags)
    if not HOOK_NAME.fullmatch(name):
        c.err(
            at,
            "hook-name",
            f"hook name {name!r} cannot be a URL segment",
            "use letters, digits, '.', '_' and '-' (at most 64)",
            key=True,
        )
    if not isinstance(raw, dict):
        c.err(
            at,
            "hooks-shape",
            f"hook {name!r} must be a mapping with at least 'spec' and 'secret_env'",
        )
        return None
    c.keys(raw, HOOK_KEYS, at)
    for required in ("spec", "secret_env"):
        if required not in raw:
            c.err(at, "missing-key", f"hook {name!r} needs {required!r}", key=True)
    secrets = _secrets(c, at, raw.get("secret_env"))
    kw: dict[str, Any] = {}
    for key, kind in (("tenant", str), ("profile", str), ("live", bool)):
        if key in raw:
            if not isinstance(raw[key], kind):
                c.err((*at, key), "bad-value", f"{key!r} must be a {kind.__name__}")
            else:
                kw[key] = raw[key]
    if "scopes" in raw:
        s = raw["scopes"]
        if not isinstance(s, list) or not all(isinstance(x, str) for x in s):
            c.err((*at, "scopes"), "bad-value", "'scopes' must be a list of strings")
        else:
            kw["scopes"] = tuple(s)
    backend = raw.get("backend", "local")
    if backend not in ("local", "temporal"):
        c.err((*at, "backend"), "bad-value", f"unknown backend {backend!r}", "local or temporal")
    kw["backend"] = backend
    if "temporal" in raw:
        t = raw["temporal"]
        if not isinstance(t, dict) or not all(isinstance(v, str) for v in t.values()):
            c.err(
                (*at, "temporal"),
                "bad-value",
                "'temporal' maps address, namespace and task_queue to strings",
            )
        else:
            c.keys(t, TEMPORAL_KEYS, (*at, "temporal"))
            kw["temporal"] = {k: v for k, v in t.items() if k in TEMPORAL_KEYS}
    for key, lo, hi in (
        ("max_body_bytes", 1, MAX_MAX_BODY),
        ("tolerance_s", 1, 3600),
        ("max_concurrent_runs", 1, 256),
    ):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                c.err((*at, key), "bad-value", f"{key!r} must be a whole number from {lo} to {hi}")
            else:
                kw[key] = v
    if "rate_limit" in raw:
        kw["rate_limit"] = _rate(c, (*at, "rate_limit"), raw["rate_limit"])
    if "delivery_id" in raw:
        d = raw["delivery_id"]
        if not isinstance(d, str) or not d or parse_pointer(d) is None:
            c.err(
                (*at, "delivery_id"),
                "bad-pointer",
                f"{d!r} is not a JSON pointer",
                "the pointer of the event's id in the body, e.g. /id",
            )
        else:
            kw["delivery_id"] = d
    if "identity" in raw:
        from runner.runs.identity import check_name

        who = raw["identity"]
        try:
            kw["identity"] = check_name(who if isinstance(who, str) else "", "identity")
        except FlowrunError as e:
            c.err(
                (*at, "identity"),
                "bad-value",
                e.message if isinstance(who, str) else "'identity' must be a string",
                "the name of a client of `flowrun users add NAME --client` or an identities file",
            )
    plan = _plan(c, base, at, raw.get("spec"), kw.get("profile"))
    if plan is not None and "inputs" in raw:
        kw["inputs"] = _inputs(c, (*at, "inputs"), raw["inputs"], plan)
    if "responses" in raw and plan is not None:
        kw.update(_responses(c, base, (*at, "responses"), raw["responses"], plan))
    if plan is None or len(c.diags) > before:
        return None
    return Hook(name=name, plan=plan, secrets=secrets, **kw)


def _secrets(c: _Checker, at: PathKey, raw: Any) -> tuple[str, ...]:
    where = (*at, "secret_env")
    if raw is None:
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(names, list)
        or not 1 <= len(names) <= 2
        or not all(isinstance(n, str) for n in names)
    ):
        c.err(
            where,
            "bad-value",
            "'secret_env' names one environment variable, or two while "
            "rotating (the new one first)",
        )
        return ()
    out: list[str] = []
    for i, n in enumerate(names):
        here = where if isinstance(raw, str) else (*where, i)
        if not ENV_NAME.fullmatch(n):
            c.err(
                here,
                "bad-value",
                f"{n!r} is not an environment variable name",
                "write the variable's name here, never the secret itself",
            )
            continue
        value = c.env.get(n)
        if not value:
            c.err(
                here,
                "hook-secret-unset",
                f"environment variable {n!r} is not set",
                f"export {n}=<a random secret of at least {MIN_SECRET_CHARS} characters>",
            )
        elif len(value) < MIN_SECRET_CHARS:
            c.err(
                here,
                "hook-secret-weak",
                f"the secret in {n!r} has {len(value)} characters; use at least {MIN_SECRET_CHARS}",
                "e.g. `openssl rand -hex 32`",
            )
        else:
            out.append(value)
    return tuple(out)


def _rate(c: _Checker, at: PathKey, raw: Any) -> RateLimit | None:
    if not isinstance(raw, dict):
        c.err(at, "bad-value", "'rate_limit' is {requests: N, per_s: SECONDS}")
        return None
    c.keys(raw, RATE_KEYS, at)
    n, per = raw.get("requests"), raw.get("per_s", 60)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        c.err((*at, "requests"), "bad-value", "'requests' must be a whole number of at least 1")
        return None
    if isinstance(per, bool) or not isinstance(per, int | float) or not 1 <= per <= 86400:
        c.err((*at, "per_s"), "bad-value", "'per_s' must be a number of seconds from 1 to 86400")
        return None
    return RateLimit(requests=n, per_s=float(per))


def _plan(c: _Checker, base: Path, at: PathKey, spec: Any, profile: str | None) -> Plan | None:
    if spec is None:
        return None
    if not isinstance(spec, str) or not spec:
        c.err((*at, "spec"), "bad-value", "'spec' must be the path of a spec file")
        return None
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    path = Path(spec) if Path(spec).is_absolute() else base / spec
    if not path.is_file():
        c.err(
            (*at, "spec"),
            "file-not-found",
            f"no such spec file {spec!r}",
            f"paths are relative to the hooks file's folder ({base})",
        )
        return None
    try:
        return compile_plan(load_spec(path), profile)
    except SpecError as e:  # the spec's own problems, at their own positions
        c.diags.extend(e.diagnostics)
    except FlowrunError as e:  # compiling for a profile the spec lacks, say
        c.err((*at, "spec"), "spec-invalid", f"{spec!r}: {e.message}", e.hint)
    return None


def _inputs(c: _Checker, at: PathKey, raw: Any, plan: Plan) -> dict[str, str] | None:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        c.err(
            at,
            "bad-value",
            "'inputs' maps input names to JSON pointers into the body",
            "e.g. inputs: {ticket_id: /ticket/id}",
        )
        return None
    props = plan.inputs_schema.get("properties")
    known = sorted(props) if isinstance(props, dict) else None
    out: dict[str, str] = {}
    for name, pointer in raw.items():
        if known is not None and name not in known:
            near = difflib.get_close_matches(str(name), known, n=1)
            c.err(
                (*at, name),
                "unknown-input",
                f"{plan.name!r} has no input {name!r}",
                f"did you mean {near[0]!r}?" if near else "inputs: " + ", ".join(known),
                key=True,
            )
        if parse_pointer(pointer) is None:
            c.err(
                (*at, name),
                "bad-pointer",
                f"{pointer!r} is not a JSON pointer",
                "a JSON pointer starts with '/': /ticket/id (RFC 6901)",
            )
        out[str(name)] = pointer
    return out


def _responses(c: _Checker, base: Path, at: PathKey, raw: Any, plan: Plan) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw:
        c.err(at, "bad-value", "'responses' must be the path of a recorded responses file")
        return {}
    from runner.models.responses import RecordedResponses
    from runner.runs import check_responses

    path = Path(raw) if Path(raw).is_absolute() else base / raw
    try:
        rec = RecordedResponses.load(path)
        check_responses(plan, rec, str(path))
    except FlowrunError as e:
        c.err(at, "bad-responses", e.message, e.hint)
        return {}
    return {"responses": rec, "responses_path": str(path.resolve())}
