"""The one door to models and tools: budget reservation, fallbacks, recorded responses, contracts.

Every model call and tool call of every node kind passes here, so the cross-cutting concerns
(budget, the writes switch, policy, dry-run, idempotency and tracing) live in one place.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from datetime import UTC, datetime
from typing import Any

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.crash import crash_point
from runner.expr.cel import ExprError
from runner.mcp.pool import McpTool
from runner.models.pricing import price_of
from runner.plan import schemas
from runner.plan.model import LLMStep, ToolStep
from runner.plan.tools import accepts_idempotency_key
from runner.policy import Decision
from runner.policy import request as policy_request


def _reserve_usd(model: str, prompt_tokens: int, max_tokens: int) -> float:
    price = price_of(model)
    if price is None:
        return 0.0
    return price.input_per_token * prompt_tokens + price.output_per_token * max_tokens


async def call_llm(ctx: NodeContext, step: LLMStep, messages: list[dict[str, str]]) -> Any:
    """One model call, trying the route's fallbacks in order; budget reserved before each try."""
    from runner.models.client import LLMRequest, ProviderError, complete, count_prompt_tokens

    run = ctx.run
    errors: list[str] = []
    cfg = step.route.config
    for model in step.route.models:
        n = run.next_call(ctx.node_id, ctx.index)
        recorded = None
        if run.responses is not None:
            recorded = run.responses.get(ctx.node_id, ctx.index, n)
            if recorded is None and run.responses.serves(ctx.node_id):
                where = f"node {ctx.node_id!r}" + (
                    f" item {ctx.index}" if ctx.index is not None else ""
                )
                raise NodeFailure(
                    f"the responses file has no entry for {where} attempt {n}", kind="config"
                )
        prompt_tokens = count_prompt_tokens(model, messages)
        if recorded is not None and recorded.usage is not None:
            if recorded.usage.completion_tokens > step.max_tokens:
                raise NodeFailure(
                    f"responses line {recorded.line}: completion_tokens "
                    f"{recorded.usage.completion_tokens} exceed the node's max_tokens "
                    f"{step.max_tokens}, which no provider would return",
                    kind="config",
                )
            # a recording knows the exact prompt size: reserve what the call will really cost
            prompt_tokens = max(prompt_tokens, recorded.usage.prompt_tokens)
        reservation = run.budget.reserve_llm(
            usd=_reserve_usd(model, prompt_tokens, step.max_tokens),
            tokens=prompt_tokens + step.max_tokens,
            model=model,
        )
        req = LLMRequest(
            model=model,
            messages=messages,
            output_schema=step.output_schema,
            schema_name=f"{ctx.node_id}_output",
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            timeout_s=cfg.timeout,
            params=dict(cfg.params),
        )
        try:
            with run.telemetry.llm_call(ctx, req) as call:
                resp = await complete(req, recorded)
                call.response(resp)
        except ProviderError as e:
            run.budget.release(reservation)
            errors.append(f"{model}: {e.kind}: {e.message}")
            ctx.detail.setdefault("provider_errors", []).append(f"{model}: {e.kind}")
            continue
        except BaseException:
            run.budget.release(reservation)
            raise
        run.budget.settle_llm(
            reservation, usd=resp.cost_usd, tokens=resp.prompt_tokens + resp.completion_tokens
        )
        ctx.usage.llm_calls += 1
        ctx.usage.input_tokens += resp.prompt_tokens
        ctx.usage.output_tokens += resp.completion_tokens
        ctx.usage.cost_usd += resp.cost_usd
        ctx.model = model
        return resp
    raise NodeFailure(
        "every model of the route failed: " + "; ".join(errors), kind="provider_error"
    )


async def call_tool(ctx: NodeContext, step: ToolStep, args: Any, *, idempotency_key: str) -> Any:
    """Check the contract, consult the idempotency ledger, invoke, record the result.

    The ledger makes a completed effect happen once: its result is replayed on retry or resume.
    A write whose outcome is unknown (intent recorded, no result) escalates unless `idempotent`.
    """
    if not isinstance(args, dict):
        raise NodeFailure(f"tool {step.name!r} arguments must be a mapping", kind="invalid_args")
    problems = schemas.validation_errors(step.args_schema, args)
    if problems:
        raise NodeFailure(
            f"tool {step.name!r} arguments do not match its schema: " + "; ".join(problems),
            kind="invalid_args",
        )
    run, svc = ctx.run, ctx.run.services
    write = step.contract.effect == "write"
    ledger_key = f"{step.name}/{idempotency_key}"
    if write and not svc.writes_enabled():
        svc.event(run.run_id, "write_refused", ctx.node_id, tool=step.name, key=idempotency_key)
        ctx.detail["on_deny"] = step.on_deny
        raise NodeStop(
            "denied",
            f"writes are switched off for every run; {step.name!r} was not called "
            "(`flowrun writes on` turns them back on)",
        )
    await authorize(ctx, step, args)
    if write and not run.envelope.live:
        return await _dry_run(ctx, step, args, idempotency_key)
    if write and not getattr(svc, "durable", False):
        ctx.detail["on_deny"] = step.on_deny
        raise NodeStop(
            "denied",
            f"a live write ({step.name!r}) needs a run recorded in the store; "
            "run it with `flowrun execute --live`",
        )
    # a default key ("<run id>:<node>") is this run's own: the store may know it has no row
    row = svc.ledger_get(ledger_key, run_id=run.run_id if step.idempotency_key is None else None)
    if row is not None and row["status"] == "done":
        ctx.detail["ledger"] = "replayed"
        svc.event(run.run_id, "ledger_replayed", ctx.node_id, tool=step.name, key=idempotency_key)
        return row["result"]
    if row is not None and row["status"] == "intent" and write and not step.contract.idempotent:
        raise NodeStop(
            "escalated",
            f"the outcome of {step.name!r} with idempotency key {idempotency_key!r} is unknown "
            "(the call started but its result was never recorded); check the target system, "
            "then undo or finish by hand",
            output={"idempotency_key": idempotency_key, "tool": step.name},
        )
    run.budget.reserve_tool(step.name)
    ctx.usage.tool_calls += 1
    kwargs = dict(args)
    if step.accepts_idempotency_key:
        kwargs["idempotency_key"] = idempotency_key
    svc.ledger_intent(
        ledger_key,
        run_id=run.run_id,
        node_id=ctx.node_id,
        tool=step.name,
        effect=step.contract.effect,
        args=args,
        compensate=step.contract.compensate,
        spec_dir=str(run.plan.loaded.directory),
        defer=not write,  # only a write's intent must be durable before the call
    )
    crash_point(f"before-effect:{ctx.node_id}")
    try:
        with run.telemetry.tool_call(ctx, step.name, args) as call:
            if isinstance(step.fn, McpTool):  # an MCP server's tool, over the run's connection
                result = await step.fn.call(ctx, kwargs)
            elif step.is_async:
                result = await step.fn(**kwargs)
            else:
                result = await asyncio.to_thread(step.fn, **kwargs)
            call.result(result)
    except (BudgetExceeded, NodeFailure, NodeStop, asyncio.CancelledError):
        raise  # a cancelled call (timeout, kill) leaves the intent: its outcome is unknown
    except Exception as e:
        message = f"tool {step.name!r} raised {type(e).__name__}: {e}"
        svc.ledger_failed(ledger_key, message)
        raise NodeFailure(message, kind="error") from None
    crash_point(f"after-effect:{ctx.node_id}")
    try:
        result = json.loads(json.dumps(result))
    except (TypeError, ValueError) as e:
        svc.ledger_failed(ledger_key, f"result is not JSON: {e}")
        raise NodeFailure(f"tool {step.name!r} returned a value that is not JSON: {e}") from None
    if step.result_schema is not None:
        problems = schemas.validation_errors(step.result_schema, result)
        if problems:
            message = f"tool {step.name!r} result does not match its schema: " + "; ".join(problems)
            svc.ledger_failed(ledger_key, message)  # a retry calls the tool again
            raise NodeFailure(message, kind="invalid_output")
    svc.ledger_done(ledger_key, result, defer=not write)
    return result


def _approval_key(ctx: NodeContext) -> str:
    return ctx.node_id if ctx.index is None else f"{ctx.node_id}[{ctx.index}]"


_STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
_NOW: tuple[int, str] = (0, "")


def _now_iso() -> str:
    """The time policies see (`now`), to the second; perf (issue 11): formatted once a second."""
    global _NOW
    second = int(time.time())
    if _NOW[0] != second:
        stamp = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
        _NOW = (second, stamp)
    return _NOW[1]


async def authorize(ctx: NodeContext, step: ToolStep, args: dict[str, Any]) -> None:
    """Decide the call by policy (scopes, CEL rules, Cedar, defaults); record the decision."""
    run, svc, env = ctx.run, ctx.run.services, ctx.run.envelope
    contract = step.contract
    destination = None
    if step.destination is not None:
        try:
            value = step.destination.evaluate({"args": args, "inputs": run.inputs})
        except ExprError as e:
            raise NodeFailure(f"destination of {step.name!r}: {e.message}", kind="config") from None
        destination = value if isinstance(value, str) else json.dumps(value)
    req = policy_request(
        tool=step.name,
        effect=contract.effect,
        args=args,
        actor=env.actor,
        tenant=env.tenant,
        workflow=run.plan.name,
        node=ctx.node_id,
        scopes=env.scopes,
        classification=contract.classification,
        destination=destination,
        now=_now_iso(),
        tainted=step.tainted_args,
        inputs=run.inputs,
    )
    decision = run.plan.policy.decide(req, required_scopes=contract.scopes)
    decided = decision.to_json()
    ctx.detail.setdefault("policy", []).append({"tool": step.name, **decided})
    svc.event(run.run_id, "policy_decision", ctx.node_id, tool=step.name, **decided)
    for workflow, outer in run.outer_policies:  # a subflow's call passes its parents' rules too
        d = outer.decide(req, required_scopes=contract.scopes)
        entry = {"tool": step.name, "workflow": workflow, **d.to_json()}
        ctx.detail["policy"].append(entry)
        svc.event(run.run_id, "policy_decision", ctx.node_id, **entry)
        if _STRICTNESS[d.effect] > _STRICTNESS[decision.effect]:
            decision = Decision(d.effect, d.rule, f"{d.reason} (policies of {workflow!r})")
    if decision.effect == "deny":
        ctx.detail["on_deny"] = step.on_deny
        raise NodeStop(
            "denied",
            f"policy {decision.rule!r} denied {step.name!r}: {decision.reason}",
            output={"policy": decision.to_json()},
        )
    if decision.effect == "require_approval":
        key = _approval_key(ctx)
        row = svc.approval_get(run.run_id, key)
        if row is None:
            summary = (
                f"{step.name}({json.dumps(args, sort_keys=True, default=str)[:300]}) needs "
                f"approval: {decision.reason}"
            )
            svc.approval_request(
                run.run_id,
                key,
                summary=summary,
                assignees=[],
                decision_schema=None,
                timeout_at=None,
                on_timeout="escalate",
            )
            raise NodeStop("waiting", summary)
        if row["status"] == "waiting":
            raise NodeStop("waiting", row.get("summary") or "waiting for approval")
        if row["status"] != "approved":
            ctx.detail["on_deny"] = step.on_deny
            raise NodeStop(
                "denied",
                f"{step.name!r} was {row['status']} by {row.get('decided_by')}: "
                f"{row.get('reason') or decision.reason}",
            )
        ctx.detail["approved_by"] = row.get("decided_by")


async def _dry_run(ctx: NodeContext, step: ToolStep, args: dict[str, Any], key: str) -> Any:
    """A write in dry-run: run its preview, record the planned change, return the planned result."""
    run, svc = ctx.run, ctx.run.services
    if step.preview_fn is None:
        ctx.detail["on_deny"] = step.on_deny
        raise NodeStop(
            "denied",
            f"dry run: write tool {step.name!r} has no `preview`, so it was not called "
            "(declare `preview: module:function` in its contract, or run with --live)",
        )
    run.budget.reserve_tool(step.name)
    ctx.usage.tool_calls += 1
    kwargs = dict(args)
    if accepts_idempotency_key(step.preview_fn):
        kwargs["idempotency_key"] = key
    try:
        if inspect.iscoroutinefunction(step.preview_fn):
            value = await step.preview_fn(**kwargs)
        else:
            value = await asyncio.to_thread(step.preview_fn, **kwargs)
        value = json.loads(json.dumps(value))
    except (BudgetExceeded, NodeFailure, NodeStop, asyncio.CancelledError):
        raise
    except Exception as e:
        raise NodeFailure(
            f"preview of {step.name!r} raised {type(e).__name__}: {e}", kind="error"
        ) from None
    if isinstance(value, dict) and {"result", "change"} <= set(value):
        result, change = value["result"], value["change"]
        if step.result_schema is not None:  # downstream nodes rely on the result's shape
            problems = schemas.validation_errors(step.result_schema, result)
            if problems:
                raise NodeFailure(
                    f"preview of {step.name!r} returned a result that does not match the tool's "
                    "result schema: " + "; ".join(problems),
                    kind="invalid_output",
                )
    else:
        result = change = value
    ctx.detail["dry_run"] = True
    ctx.detail["planned"] = change
    svc.event(run.run_id, "planned_change", ctx.node_id, tool=step.name, key=key, change=change)
    return result
