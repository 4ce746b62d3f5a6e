"""`POST /hooks/<name>`: a signed webhook delivery starts a run of the hook's workflow.

Checked in this order, each refusal starting nothing: the hook exists (404) and is POSTed
(405) as `application/json` (415); the body fits the hook's size limit (413); the signature and
its timestamp (401); the hook's rate limit (429 with Retry-After); the body is strict JSON
(UTF-8, no duplicate keys, no NaN or Infinity, no lone surrogates) and has a delivery id (400);
the mapped inputs match the workflow's `inputs` schema (400, with the JSON pointer of the first
failing value). Then the delivery is claimed (a replay answers 200 with the first run's id) and
the run starts aside: 202 with its id at once. Hooks are authenticated by their HMAC secrets
only (no console session). docs/intake.md has the details and a curl recipe.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runner.errors import FlowrunError
from runner.plan.schemas import validator
from runner.redact import show
from runner.runs import Runs
from runner.runs.identity import Directory, Forbidden, Identity, audit, hook_grant
from runner.runs.intake import Accepted, Delivery, Intake
from runner.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, BadSignature, verify
from runner.web.hookfile import Hook, HookFile, is_missing, parse_pointer, pointer_of, resolve

PREFIX = "/hooks/"
MAX_DELIVERY_ID = 200
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def _refuse(status: int, message: str, **extra: Any) -> Response:
    return _answer(status, {"error": message, **extra})


class _TooLarge(Exception):
    pass


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: a duplicate key means two readers may see two bodies."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _NotJson(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(raw: bytes) -> Any:
    """The body as strict JSON (RFC 8259): UTF-8, unique keys, no NaN or Infinity, no lone
    surrogate escapes (a run's inputs must store and show as text); ValueError says why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _NotJson(f"it is not UTF-8 (byte {e.start})") from None
    body = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _NotJson("it holds a lone surrogate escape (\\ud800-\\udfff)") from None
    return body


def _is_json(content_type: str | None) -> bool:
    """`application/json` (any parameters, e.g. charset=utf-8), or a `+json` type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, refused past `limit` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def map_inputs(hook: Hook, body: Any) -> tuple[dict[str, Any] | None, Response | None]:
    """The run's inputs from a parsed body, or the 400 that says which pointer failed."""
    if hook.inputs is None:
        if not isinstance(body, dict):
            return None, _refuse(400, "the body must be a JSON object", pointer="")
        inputs = body
    else:
        inputs = {}
        for name, pointer in hook.inputs.items():
            value = resolve(body, parse_pointer(pointer) or [])
            if is_missing(value):
                return None, _refuse(
                    400, f"the body has no value at {pointer!r} (input {name!r})", pointer=pointer
                )
            inputs[name] = value
    errors = sorted(
        validator(hook.plan.inputs_schema).iter_errors(inputs),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        err = errors[0]
        path = list(err.absolute_path)
        at = pointer_of(path)
        if hook.inputs is not None and path and str(path[0]) in hook.inputs:
            at = hook.inputs[str(path[0])] + pointer_of(path[1:])
        elif hook.inputs is not None:
            at = ""
        # the message may quote the value: it is shown as everything flowrun shows, redacted
        return None, _refuse(
            400,
            f"input does not match {hook.plan.name!r}'s inputs schema: {show(err.message)}",
            pointer=at,
            input_pointer=pointer_of(path),
        )
    return inputs, None


def _delivery_id(hook: Hook, request: Request, body: Any) -> tuple[str, Response | None]:
    """The delivery's id: from the signed body when the hook names its pointer (a replayed
    request cannot then pass as a new delivery), else from the X-Flowrun-Delivery header."""
    if hook.delivery_id is not None:
        value = resolve(body, parse_pointer(hook.delivery_id) or [])
        if isinstance(value, bool) or not isinstance(value, str | int):
            return "", _refuse(
                400,
                f"the body has no delivery id (a string or number) at {hook.delivery_id!r}",
                pointer=hook.delivery_id,
            )
        found = str(value)
        what = f"the delivery id at {hook.delivery_id!r}"
    else:
        found = request.headers.get(DELIVERY_HEADER, "")
        what = f"a {DELIVERY_HEADER} header"
    if not found or len(found) > MAX_DELIVERY_ID or not found.isprintable():
        return "", _refuse(400, f"{what} (1 to {MAX_DELIVERY_ID} characters) is required")
    return found, None


class HooksApp:
    """The ASGI app of the hooks; `mount_over(other)` serves the rest of the paths by `other`."""

    def __init__(
        self,
        hooks: HookFile,
        store_target: str,
        intake: Intake | None = None,
        identities: Path | None = None,
    ) -> None:
        self.hooks = hooks
        self.target = store_target
        self.intake = intake or Intake(store_target)
        self.directory = Directory(store_target, identities)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        resp = await self.handle(request)
        await resp(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        name = request.url.path[len(PREFIX) :]
        hook = self.hooks.hooks.get(name)
        if hook is None:
            return _refuse(404, f"no hook {name!r}")
        if request.method != "POST":
            return _answer(405, {"error": "POST a signed JSON body"}, {"Allow": "POST"})
        if not _is_json(request.headers.get("content-type")):
            return _refuse(415, "the body must be sent as Content-Type: application/json")
        try:
            raw = await _body(request, hook.max_body_bytes)
        except _TooLarge:
            return _refuse(413, f"the body is larger than {hook.max_body_bytes} bytes")
        try:
            verify(
                hook.secrets,
                raw,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                tolerance_s=hook.tolerance_s,
            )
        except BadSignature as e:
            return _refuse(401, str(e))
        if hook.rate_limit is not None:
            wait = await run_in_threadpool(self._rate, hook)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                return _answer(
                    429,
                    {"error": "too many deliveries to this hook", "retry_after_s": retry},
                    {"Retry-After": str(retry)},
                )
        try:
            body = parse_json(raw)
        except ValueError as e:
            return _refuse(400, f"the body is not JSON: {e}")
        except RecursionError:
            return _refuse(400, "the body is nested too deeply")
        delivery_id, refusal = _delivery_id(hook, request, body)
        if refusal is not None:
            return refusal
        inputs, refusal = map_inputs(hook, body)
        if refusal is not None:
            return refusal
        assert inputs is not None
        tenant, scopes, live = hook.tenant, list(hook.scopes), hook.live
        if hook.identity is not None:
            try:
                tenant, scopes, live = await run_in_threadpool(self._act_as, hook)
            except Forbidden as e:
                return _refuse(403, e.message)
        delivery = Delivery(
            hook=hook.name,
            delivery_id=delivery_id,
            plan=hook.plan,
            inputs=inputs,
            tenant=tenant,
            backend=hook.backend,
            temporal=hook.temporal,
            live=live,
            scopes=tuple(scopes),
            responses=hook.responses,
            responses_path=hook.responses_path,
            actor=hook.identity,
        )
        try:
            accepted: Accepted = await run_in_threadpool(
                self.intake.accept, delivery, limit=hook.max_concurrent_runs
            )
        except FlowrunError as e:
            return _refuse(503, e.message)
        if not accepted.fresh:
            return _answer(200, {"run_id": accepted.run_id, "duplicate": True})
        return _answer(202, {"run_id": accepted.run_id, "duplicate": False})

    def _rate(self, hook: Hook) -> float:
        assert hook.rate_limit is not None
        with contextlib.closing(Runs.open(self.target)) as runs:
            return runs.store.rate_take(
                f"hook:{hook.name}",
                limit=hook.rate_limit.requests,
                window_s=hook.rate_limit.per_s,
                now=time.time(),
            )

    def _act_as(self, hook: Hook) -> tuple[str | None, list[str], bool]:
        """The hook's identity, read now: what its run holds; a refusal is an audit event."""
        assert hook.identity is not None
        with contextlib.closing(Runs.open(self.target)) as runs:
            who = self.directory.named(hook.identity, runs.store)
            try:
                return hook_grant(who, hook.identity, hook.tenant, hook.scopes, hook.live)
            except Forbidden as e:
                actor = who or Identity(name=hook.identity, kind="client", source="unknown")
                audit(
                    runs.store,
                    actor,
                    action="start",
                    allowed=False,
                    via=f"hook:{hook.name}",
                    reason=e.message,
                )
                raise

    def mount_over(self, other: Any) -> Any:
        """One ASGI app: `/hooks/...` here, everything else (and lifespan) by `other`."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].startswith(PREFIX):
                await self(scope, receive, send)
            else:
                await other(scope, receive, send)

        return app


def standalone(
    hooks: HookFile,
    store_target: str,
    intake: Intake | None = None,
    identities: Path | None = None,
) -> Any:
    """The hooks alone (`flowrun intake`): anything but /hooks/... is 404."""
    hooks_app = HooksApp(hooks, store_target, intake, identities)

    async def not_found(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await _refuse(404, "not found; deliveries go to /hooks/<name>")(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return hooks_app.mount_over(not_found)
