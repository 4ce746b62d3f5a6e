"""`flowrun mcp serve`: each workflow as one MCP tool; every call is a normal, recorded run.

The tool's input schema is the spec's `inputs`; its description the spec's metadata; its
annotations what the spec can do: readOnly when no tool it calls writes, else destructive.
A call validates its input, records a run in the store under the serve command's envelope
(dry-run unless --live, its scopes and actor), runs it to an outcome, and answers with the
run id, status, outputs and reason as structured content. A run parked for approval answers
`waiting` with its run id; `flowrun approve` and `flowrun resume` continue it.

Over HTTP with identities (runner/runs/identity.py), every request carries a client's bearer
token, checked against the store or identities file on each request; a run then acts as that
client, for its tenant, with the scopes it was granted within the server's (docs/mcp.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.engine.context import Envelope
from runner.errors import FlowrunError, UsageError
from runner.plan.model import Plan
from runner.redact import show
from runner.runs.identity import Directory, Forbidden, Identity, audit, grant

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "succeeded",
                "failed",
                "escalated",
                "budget_exceeded",
                "denied",
                "waiting",
                "killed",
            ],
        },
        "outputs": {"type": "object"},
        "reason": {"type": ["string", "null"]},
    },
    "required": ["run_id", "status", "outputs"],
}


def _steps(plan: Plan) -> list[Any]:
    """Every tool step of a plan, inside maps, subflows and loop bodies too."""
    out: list[Any] = []
    for node in plan.nodes.values():
        if node.tool is not None:
            out.append(node.tool)
        if node.map is not None and node.map.inner.tool is not None:
            out.append(node.map.inner.tool)
        if node.flow is not None:
            out += _steps(node.flow.plan)
        if node.loop is not None:
            out += _steps(node.loop.body)
    return out


def can_write(plan: Plan) -> bool:
    return any(step.contract.effect == "write" for step in _steps(plan))


def _has_llm(plan: Plan) -> bool:
    return any(
        n.llm is not None or (n.map is not None and n.map.inner.llm is not None)
        for n in plan.nodes.values()
    )


@dataclass
class Served:
    """The workflows one `flowrun mcp serve` exposes, and the envelope of every run it starts."""

    plans: dict[str, Plan]
    envelope: Envelope
    responses: Any
    responses_path: str | None
    store: str | None
    operate: bool = False  # also expose approve, reject, kill, undo (runner/mcp/operate.py)
    directory: Directory | None = None  # set: every HTTP request needs a client's token

    @classmethod
    def load(
        cls,
        specs: list[str],
        *,
        profile: str | None,
        responses: str | None,
        envelope: Envelope,
        store: str | None,
        operate: bool = False,
    ) -> Served:
        from runner.plan.compile import compile_plan
        from runner.spec import load_spec

        plans: dict[str, Plan] = {}
        for spec in specs:
            plan = compile_plan(load_spec(spec), profile)
            if plan.name in plans:
                raise UsageError(
                    f"two specs are named {plan.name!r}: {plans[plan.name].loaded.path} and {spec}",
                    hint="each served workflow is a tool named by metadata.name",
                )
            plans[plan.name] = plan
        recorded = None
        if responses is not None:
            from runner.models.responses import RecordedResponses
            from runner.runs import check_responses

            recorded = RecordedResponses.load(Path(responses))
            if len(plans) == 1:
                check_responses(next(iter(plans.values())), recorded, responses)
        if any(_has_llm(p) for p in plans.values()):
            from runner.models.client import ensure_litellm

            ensure_litellm()  # import once, before the first call
        return cls(
            plans=plans,
            envelope=envelope,
            responses=recorded,
            responses_path=responses,
            store=store,
            operate=operate,
        )

    def names(self) -> str:
        return ", ".join(sorted(self.plans))

    def tools(self) -> list[Any]:
        from mcp.types import Tool, ToolAnnotations

        out = []
        for name, plan in sorted(self.plans.items()):
            meta = plan.loaded.spec.metadata
            schema = dict(plan.inputs_schema)
            schema.setdefault("type", "object")
            writes = can_write(plan)
            mode = "live" if self.envelope.live else "dry-run"
            description = (meta.description or f"flowrun workflow {name}").strip()
            description += (
                f" (a governed flowrun run, {mode}; returns run_id, status and outputs"
                + ("; may write" if writes else "; reads only")
                + ")"
            )
            out.append(
                Tool(
                    name=name,
                    title=meta.description.split("\n")[0][:80] if meta.description else name,
                    description=description,
                    input_schema=schema,
                    output_schema=RESULT_SCHEMA,
                    annotations=ToolAnnotations(
                        read_only_hint=not writes,
                        destructive_hint=writes,
                        idempotent_hint=False,
                        open_world_hint=True,
                    ),
                )
            )
        if self.operate:
            out += _operation_tools()
        return out

    async def run(
        self, name: str, arguments: dict[str, Any], who: Identity | None = None
    ) -> dict[str, Any]:
        """One call: a normal flowrun run, recorded in the store; raises UsageError on bad input.

        With --operate, the operation tools act on runs of the store instead (runner.runs).
        `who`: the authenticated client the run acts as (None: the server's envelope, stdio).
        """
        from runner.runs import Runs, check_inputs, new_run_id

        if self.directory is not None and who is None:
            raise Forbidden("authentication required")  # the HTTP middleware answers 401 first
        if (where := _not_finite(arguments)) is not None:
            # the SDK's JSON parser takes NaN and Infinity, which are not JSON: NaN would pass
            # every bound of a schema and every comparison of a policy or gate
            raise UsageError(f"arguments of {name!r}: {where or '(root)'} is not a finite number")
        if self.operate and name not in self.plans:
            from runner.mcp.operate import OPERATIONS, operate

            if name in OPERATIONS:
                return await operate(self.store, name, arguments, who=who)
        plan = self.plans.get(name)
        if plan is None:
            raise UsageError(f"no workflow named {name!r}; served: {self.names()}")
        inputs = check_inputs(plan, arguments, f"arguments of {name!r}")
        env = self.envelope
        run_id = new_run_id()
        runs = Runs.open(self.store, create=True)
        try:
            tenant, actor = env.tenant, env.actor
            scopes, live = list(env.scopes), env.live
            options: dict[str, Any] = {"via": "mcp"}
            if who is not None:
                scopes, live = grant(who, env.scopes, env.live)
                tenant, actor = self._tenant(runs, who, name), who.name
                self._check_scopes(runs, who, name, plan, scopes)
                audit(runs.store, who, action=f"start {name}", allowed=True, run_id=run_id,
                      via="mcp")  # fmt: skip
                options["client"] = who.name
            result = await runs.start(
                plan,
                inputs,
                run_id=run_id,
                responses=self.responses,
                responses_path=self.responses_path,
                tenant=tenant,
                actor=actor,
                options={"live": live, "scopes": scopes, **options},
            )
        finally:
            runs.close()
        return {
            "run_id": result.run_id,
            "status": result.status,
            "outputs": result.outputs,
            "reason": result.reason,
        }

    def _tenant(self, runs: Any, who: Identity, name: str) -> str | None:
        """The server's --tenant when the client acts for it; else the client's own tenant."""
        tenant = self.envelope.tenant
        if tenant is None:
            return who.home_tenant
        if not who.for_tenant(tenant):
            reason = f"{who.name!r} does not act for tenant {tenant!r}"
            audit(runs.store, who, action=f"start {name}", allowed=False, via="mcp", reason=reason)
            raise Forbidden(f"start {name!r} refused: {reason}")
        return tenant

    def _check_scopes(
        self, runs: Any, who: Identity, name: str, plan: Plan, scopes: list[str]
    ) -> None:
        """A client may start a workflow only when it holds every scope its tools declare: a
        run that could only be denied at its write is refused before it starts."""
        needed = sorted({s for step in _steps(plan) for s in step.contract.scopes})
        missing = [s for s in needed if s not in scopes]
        if not missing:
            return
        reason = (
            f"{name!r} calls tools that need {', '.join(missing)}; {who.name!r} holds "
            f"{', '.join(scopes) or 'no scopes'} here"
        )
        audit(runs.store, who, action=f"start {name}", allowed=False, via="mcp", reason=reason)
        raise Forbidden(
            f"start refused: {reason}",
            hint="grant the client the scope (flowrun users add ... --scope S) within the "
            "server's --scopes",
        )


def _not_finite(value: Any, at: str = "") -> str | None:
    """The JSON pointer of the first NaN or infinite number in `value`, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return at
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_finite(item, f"{at}/{key}")
        if found is not None:
            return found
    return None


def identity_of(ctx: Any) -> Identity | None:
    """The client an HTTP request was authenticated as (the bearer middleware put it there)."""
    scope = getattr(getattr(ctx, "request", None), "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    claims = getattr(getattr(user, "access_token", None), "claims", None) or {}
    data = claims.get("flowrun_identity")
    return Identity(**data) if isinstance(data, dict) else None


class TokenCheck:
    """The MCP SDK's TokenVerifier over flowrun's identities: asked on every HTTP request, so
    a revoked or removed client is refused (401) from its next request on."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def verify_token(self, token: str) -> Any:
        import anyio
        from mcp.server.auth.provider import AccessToken

        try:
            who = await anyio.to_thread.run_sync(self.directory.authenticate, token)
        except FlowrunError:  # the store cannot be read now: nobody is admitted
            return None
        if who is None:
            return None
        return AccessToken(
            token=token,
            client_id=who.name,
            scopes=list(who.scopes),
            claims={"flowrun_identity": asdict(who)},
        )


def _operation_tools() -> list[Any]:
    from mcp.types import Tool, ToolAnnotations

    from runner.mcp.operate import OPERATIONS

    return [
        Tool(
            name=name,
            title=name,
            description=op["description"],
            input_schema=op["input"],
            annotations=ToolAnnotations(
                read_only_hint=False,
                destructive_hint=op["destructive"],
                idempotent_hint=False,
                open_world_hint=True,
            ),
        )
        for name, op in OPERATIONS.items()
    ]


def build_server(served: Served) -> Any:
    from mcp.server import Server
    from mcp.types import CallToolResult, ListToolsResult, TextContent

    from runner import __version__

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(tools=served.tools())

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        try:
            out = await served.run(params.name, dict(params.arguments or {}), identity_of(ctx))
        except FlowrunError as e:
            return CallToolResult(
                content=[TextContent(type="text", text=show(e.render()))], is_error=True
            )
        out = show(out)  # an answer is one more place a run is shown: redacted
        text = json.dumps(out, default=str, ensure_ascii=False)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=out)

    def input_schema(name: str) -> dict[str, Any] | None:
        for tool in served.tools():
            if tool.name == name:
                schema: dict[str, Any] = tool.input_schema
                return schema
        return None

    return Server(
        "flowrun",
        version=__version__,
        instructions="Each tool runs one flowrun workflow inside its envelope (policy, budget, "
        "dry-run unless served --live); the answer carries the run id for `flowrun show`.",
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(served: Served) -> None:
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(served)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)


def serve_http(served: Served, host: str, port: int) -> None:
    import uvicorn

    server = build_server(served)
    auth: dict[str, Any] = {}
    if served.directory is not None:
        from mcp.server.auth.settings import AuthSettings
        from pydantic import AnyHttpUrl

        # a resource server with flowrun's own client tokens (flowrun users add --client): no
        # authorization server to advertise, so no RFC 9728 metadata; a missing or bad token
        # is a 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750)
        auth = {
            "auth": AuthSettings(
                issuer_url=AnyHttpUrl("http://127.0.0.1"),  # unused: no authorization server
                resource_server_url=None,
            ),
            "token_verifier": TokenCheck(served.directory),
        }
    app = guard_http(server.streamable_http_app(host=host, json_response=True, **auth))
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


def _json_type(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


def guard_http(app: Any) -> Any:
    """Refusals the SDK does not make before a request reaches it: credentials given twice
    (`Authorization` more than once: which one acts? 400, RFC 6750 invalid_request), and a POST
    whose body is not declared JSON (415, where the SDK answers 400)."""
    from starlette.responses import JSONResponse

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", [])
            auths = [v for k, v in headers if k.lower() == b"authorization"]
            types = [v for k, v in headers if k.lower() == b"content-type"]
            refusal: Any = None
            if len(auths) > 1:
                refusal = JSONResponse(
                    {"error": "invalid_request",
                     "error_description": "send one Authorization header"},
                    status_code=400,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_request", '
                             'error_description="send one Authorization header"'},
                )  # fmt: skip
            elif scope["method"] == "POST" and (len(types) != 1 or not _json_type(types[0])):
                refusal = JSONResponse(
                    {"error": "unsupported_media_type",
                     "error_description": "POST a JSON-RPC body as Content-Type: application/json"},
                    status_code=415,
                )  # fmt: skip
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
