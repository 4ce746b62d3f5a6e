"""The envelope, composed: every node attempt, tool call and model call of every node kind (map
items, subflow and loop-pass nodes included) passes the wrappers stacked here, in this order.

The wrappers themselves are in runner/engine/wrappers.py; this module only decides their order,
and the order is where the guarantees come from (the reasons are inline).
"""

from __future__ import annotations

from typing import Any

from runner.engine.ceilings import soft_pressure
from runner.engine.context import NodeContext, NodeFailure
from runner.engine.wrappers import (
    ArgsContract,
    Autonomy,
    DryRun,
    DurableWrites,
    LedgerRecord,
    LedgerReplay,
    ModelBudget,
    ModelCache,
    ModelCall,
    ModelHandler,
    ModelRate,
    ModelTrace,
    NodeHandler,
    PolicyGate,
    RecordedAnswers,
    ResultContract,
    Retry,
    Timeout,
    ToolBudget,
    ToolCall,
    ToolHandler,
    ToolRate,
    ToolSpend,
    ToolTrace,
    TraceRequired,
    WritesSwitch,
    complete_model,
    invoke_preview,
    invoke_tool,
)
from runner.plan.model import LLMStep, ToolStep


def node_envelope(runner: NodeHandler) -> NodeHandler:
    """Around a node runner: each attempt under the timeout; failed attempts retried."""
    return Retry(Timeout(runner))


def _tool_envelope(*, writes: bool = True) -> ToolHandler:
    # the writes switch refuses before policy is asked; policy decides before dry-run, so a
    # dry run shows what a live run would be allowed to do; a dry run never reaches the ledger.
    # A replay from the ledger spends no budget; the budget is reserved before the intent is
    # recorded (a refused call leaves no intent whose outcome would look unknown); the result is
    # checked inside the ledger record, so a bad result is recorded as a failed call. Rate
    # limits are taken before the spend is reserved (a call waiting for its rate holds no
    # reservation), both only for a call really made (not a preview, not a ledger replay).
    # A live write needs a trace id before anything else of it happens; its autonomy level is
    # read after the ledger replay (a completed write is replayed, never parked again) and can
    # only tighten: preview instead of the effect, or an approval before it.
    preview: ToolHandler = ToolBudget(invoke_preview)
    effect: ToolHandler = ToolBudget(
        ToolRate(ToolSpend(LedgerRecord(ResultContract(ToolTrace(invoke_tool)))))
    )
    if not writes:
        # perf: a read passes the writes switch, dry run, trace requirement, durable-writes
        # check and autonomy level untouched (each acts on writes only), so a read's envelope
        # is the same stack without them, in the same order
        return ArgsContract(PolicyGate(LedgerReplay(effect)))
    live: ToolHandler = TraceRequired(
        DurableWrites(LedgerReplay(Autonomy(effect, preview=preview)))
    )
    return ArgsContract(WritesSwitch(PolicyGate(DryRun(live, preview=preview))))


def _model_envelope() -> ModelHandler:
    # the recording is looked up first: it gives the exact prompt size the budget reserves for;
    # the span covers the provider call alone; a route's rate limit is taken before the call is
    # reserved (a call waiting for its rate holds no reservation)
    # a cached answer is looked up before anything is taken or reserved: a hit costs nothing
    return RecordedAnswers(ModelCache(ModelRate(ModelBudget(ModelTrace(complete_model)))))


TOOL_CALL = _tool_envelope()
READ_CALL = _tool_envelope(writes=False)
MODEL_CALL = _model_envelope()


async def call_tool(ctx: NodeContext, step: ToolStep, args: Any, *, idempotency_key: str) -> Any:
    """Call a tool through the envelope; a completed effect happens once (the ledger)."""
    call = ToolCall(ctx=ctx, step=step, args=args, key=idempotency_key)
    return await (TOOL_CALL if call.write else READ_CALL)(call)


async def call_llm(ctx: NodeContext, step: LLMStep, messages: list[dict[str, str]]) -> Any:
    """One model call, trying the route's fallbacks in order, each try through the envelope."""
    from runner.models.client import LLMRequest, ProviderError

    errors: list[str] = []
    cfg = step.route.config
    models = step.route.models
    if cfg.downgrade_to is not None:
        why = soft_pressure(ctx)
        if why is not None:  # a ceiling is nearly spent: the cheaper model, then the fallbacks
            models = (cfg.downgrade_to, *cfg.fallbacks)
            if ctx.detail.downgraded is None:
                ctx.detail.downgraded = f"{cfg.model} -> {cfg.downgrade_to}: {why}"
                ctx.run.services.event(
                    ctx.run.run_id, "downgraded", ctx.node_id, model=cfg.model,
                    to=cfg.downgrade_to, why=why,
                )  # fmt: skip
    for model in models:
        req = LLMRequest(
            model=model,
            messages=messages,
            output_schema=step.output_schema,
            schema_name=f"{ctx.node_id}_output",
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            timeout_s=cfg.timeout,
            params=dict(cfg.params),
            **({"max_wait_s": cfg.max_wait} if cfg.max_wait is not None else {}),
        )
        try:
            return await MODEL_CALL(ModelCall(ctx=ctx, step=step, request=req))
        except ProviderError as e:
            errors.append(f"{model}: {e.kind}: {e.message}")
            ctx.detail.provider_errors.append(f"{model}: {e.kind}")
    raise NodeFailure(
        "every model of the route failed: " + "; ".join(errors), kind="provider_error"
    )
