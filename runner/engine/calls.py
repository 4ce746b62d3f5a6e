"""The one door to models and tools: budget reservation, fallbacks, recorded responses, contracts.

Every model call and tool call of every node kind passes here, so cross-cutting concerns
(budget now; policy, dry-run, idempotency and tracing as they arrive) live in one place.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.crash import crash_point
from runner.models.pricing import price_of
from runner.plan import schemas
from runner.plan.model import LLMStep, ToolStep


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
        raise NodeStop(
            "denied",
            f"writes are switched off for every run; {step.name!r} was not called "
            "(`flowrun writes on` turns them back on)",
        )
    row = svc.ledger_get(ledger_key)
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
    )
    crash_point(f"before-effect:{ctx.node_id}")
    try:
        with run.telemetry.tool_call(ctx, step.name, args) as call:
            if step.is_async:
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
    svc.ledger_done(ledger_key, result)
    return result
