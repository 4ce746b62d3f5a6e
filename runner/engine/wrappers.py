"""The envelope's concerns, one small wrapper each, around node attempts, tool calls, model calls.

Each wrapper holds the next handler (`inner`) and does one thing before or after it: a timeout,
a retry, the writes switch, a policy decision, dry-run, the idempotency ledger, a budget
reservation, a trace span. `runner/engine/calls.py` composes them, once, in the order that
matters (the reasons are next to that composition); node runners only see the composed door.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runner.engine.approvals import Ask, approval_key, await_decision
from runner.engine.budget import BudgetExceeded
from runner.engine.ceilings import (
    acquire_rates,
    budgets_of,
    call_scope,
    rate_keys,
)
from runner.engine.ceilings import reserve as reserve_within_ceilings
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.crash import crash_point
from runner.engine.results import Usage
from runner.expr.cel import ExprError
from runner.jsontext import json_copy
from runner.mcp.contracts import McpTool
from runner.mcp.pool import call_tool
from runner.models.pricing import costliest
from runner.plan import schemas
from runner.plan.model import LLMStep, ToolStep
from runner.plan.tools import accepts_idempotency_key
from runner.policy import Decision
from runner.policy import request as policy_request

if TYPE_CHECKING:
    from runner.models.client import LLMRequest, LLMResponse
    from runner.models.responses import Recorded

# ---------------------------------------------------------------------------------------------
# node attempts: a handler runs the node's runner once and returns its output


NodeHandler = Callable[[NodeContext], Awaitable[Any]]

# A retry policy's `on` names, and the failure kinds (NodeFailure.kind) each one retries.
RETRY_KINDS = {
    "error": {"error", "invalid_output", "item"},
    "timeout": {"timeout"},
    "provider_error": {"provider_error"},
}


class NodeWrapper:
    __slots__ = ("inner",)

    def __init__(self, inner: NodeHandler) -> None:
        self.inner = inner


class Timeout(NodeWrapper):
    """Each attempt gets the node's `timeout`; running out is a retryable `timeout` failure."""

    async def __call__(self, ctx: NodeContext) -> Any:
        timeout = ctx.node.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self.inner(ctx)
        except TimeoutError:
            raise NodeFailure(f"timed out after {timeout:g}s", kind="timeout") from None


class Retry(NodeWrapper):
    """Failed attempts run again as the node's retry policy says; `ctx.attempts` counts them."""

    async def __call__(self, ctx: NodeContext) -> Any:
        policy = ctx.node.retry
        while True:
            ctx.attempts += 1
            try:
                return await self.inner(ctx)
            except NodeFailure as e:
                retryable = any(e.kind in RETRY_KINDS[k] for k in policy.on)
                if not retryable or ctx.attempts >= policy.max_attempts:
                    raise
                ctx.detail.retried.append(e.message)
                n = ctx.attempts
                delay = min(policy.backoff * policy.multiplier ** (n - 1), policy.max_backoff)
            await asyncio.sleep(delay)


# ---------------------------------------------------------------------------------------------
# tool calls


@dataclass(slots=True)
class ToolCall:
    """One call of a tool by a node: bound arguments and the idempotency key derived from them."""

    ctx: NodeContext
    step: ToolStep
    args: dict[str, Any]
    key: str
    billed_usd: float | None = None  # a priced call's bill, once it answered (ToolTrace)

    @property
    def write(self) -> bool:
        return self.step.contract.effect == "write"

    @property
    def ledger_key(self) -> str:
        return f"{self.step.name}/{self.key}"


ToolHandler = Callable[[ToolCall], Awaitable[Any]]


class CallFailed(NodeFailure):
    """A tool call that ran and failed (raised, or returned a result that breaks its contract):
    the ledger records it failed, so a retry calls the tool again."""

    def __init__(self, message: str, *, kind: str = "error", ledger: str | None = None) -> None:
        super().__init__(message, kind=kind)
        self.ledger_message = ledger or message


class ToolWrapper:
    __slots__ = ("inner",)

    def __init__(self, inner: ToolHandler) -> None:
        self.inner = inner


class ArgsContract(ToolWrapper):
    """Arguments must match the tool's args schema before anything else sees them."""

    async def __call__(self, call: ToolCall) -> Any:
        step = call.step
        if not isinstance(call.args, dict):
            raise NodeFailure(
                f"tool {step.name!r} arguments must be a mapping", kind="invalid_args"
            )
        problems = schemas.validation_errors(step.args_schema, call.args)
        if problems:
            raise NodeFailure(
                f"tool {step.name!r} arguments do not match its schema: " + "; ".join(problems),
                kind="invalid_args",
            )
        return await self.inner(call)


class WritesSwitch(ToolWrapper):
    """`flowrun writes off` refuses every write of every run, before policy is even asked."""

    async def __call__(self, call: ToolCall) -> Any:
        if call.write:
            ctx = call.ctx
            svc = ctx.run.services
            if not svc.writes_enabled():
                svc.event(
                    ctx.run.run_id, "write_refused", ctx.node_id, tool=call.step.name, key=call.key
                )
                ctx.detail.on_deny = call.step.on_deny
                raise NodeStop(
                    "denied",
                    f"writes are switched off for every run; {call.step.name!r} was not called "
                    "(`flowrun writes on` turns them back on)",
                )
        return await self.inner(call)


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


class PolicyGate(ToolWrapper):
    """Scopes, CEL rules, Cedar and defaults decide the call, tainted arguments included; a
    subflow's call must also pass its parents' policies. Every decision is recorded."""

    async def __call__(self, call: ToolCall) -> Any:
        decision = self.decide(call)
        if decision.effect == "deny":
            call.ctx.detail.on_deny = call.step.on_deny
            raise NodeStop(
                "denied",
                f"policy {decision.rule!r} denied {call.step.name!r}: {decision.reason}",
                output={"policy": decision.to_json()},
            )
        if decision.effect == "require_approval":
            approve_call(call, decision)
        return await self.inner(call)

    @staticmethod
    def decide(call: ToolCall) -> Decision:
        ctx, step = call.ctx, call.step
        run, env = ctx.run, ctx.run.envelope
        svc = run.services
        contract = step.contract
        destination = call_destination(call)
        req = policy_request(
            tool=step.name,
            effect=contract.effect,
            args=call.args,
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
        ctx.detail.policy.append({"tool": step.name, **decided})
        svc.event(run.run_id, "policy_decision", ctx.node_id, tool=step.name, **decided)
        for workflow, outer in run.outer_policies:
            d = outer.decide(req, required_scopes=contract.scopes)
            entry = {"tool": step.name, "workflow": workflow, **d.to_json()}
            ctx.detail.policy.append(entry)
            svc.event(run.run_id, "policy_decision", ctx.node_id, **entry)
            if _STRICTNESS[d.effect] > _STRICTNESS[decision.effect]:
                decision = Decision(d.effect, d.rule, f"{d.reason} (policies of {workflow!r})")
        return decision


def approve_call(call: ToolCall, decision: Decision) -> None:
    """A call policy wants approved: ask once, wait, and go on only once someone approved it."""
    ctx, step = call.ctx, call.step

    def ask() -> Ask:
        args = json.dumps(call.args, sort_keys=True, default=str)[:300]
        return Ask(summary=f"{step.name}({args}) needs approval: {decision.reason}")

    row = await_decision(ctx.run, approval_key(ctx.node_id, ctx.index), ask)
    if row["status"] != "approved":
        ctx.detail.on_deny = step.on_deny
        raise NodeStop(
            "denied",
            f"{step.name!r} was {row['status']} by {row.get('decided_by')}: "
            f"{row.get('reason') or decision.reason}",
        )
    ctx.detail.approved_by = row.get("decided_by")


class DryRun(ToolWrapper):
    """Without --live, a write runs its `preview` (through `preview`'s own handlers) instead."""

    __slots__ = ("preview",)

    def __init__(self, inner: ToolHandler, preview: ToolHandler) -> None:
        super().__init__(inner)
        self.preview = preview

    async def __call__(self, call: ToolCall) -> Any:
        if not call.write or call.ctx.run.envelope.live:
            return await self.inner(call)
        if call.step.preview_fn is None:
            call.ctx.detail.on_deny = call.step.on_deny
            raise NodeStop(
                "denied",
                f"dry run: write tool {call.step.name!r} has no `preview`, so it was not called "
                "(declare `preview: module:function` in its contract, or run with --live)",
            )
        return await self.preview(call)


class TraceRequired(ToolWrapper):
    """A live write is made only when the run's calls are traced: with no trace id to record it
    under, it is refused (the observability readiness gate, docs/readiness.md)."""

    async def __call__(self, call: ToolCall) -> Any:
        if call.write:
            ctx = call.ctx
            if ctx.run.telemetry.trace_id(ctx) is None:
                ctx.run.services.event(
                    ctx.run.run_id,
                    "write_refused",
                    ctx.node_id,
                    tool=call.step.name,
                    key=call.key,
                    reason="no trace id",
                )
                ctx.detail.on_deny = call.step.on_deny
                raise NodeStop(
                    "denied",
                    f"{call.step.name!r} was not called: a live write needs a trace id, and this "
                    "run records its calls nowhere (run it through `flowrun execute`)",
                )
        return await self.inner(call)


class Autonomy(ToolWrapper):
    """A live write runs at its tool's autonomy level (runner/engine/autonomy.py): `dry_run`
    runs the preview instead, `approval` parks it for a person first, `autonomous` leaves it
    to the spec. The level is read (and demoted if the tool's rates call for it) right before
    the write; a write already in the ledger never gets here (it is replayed)."""

    __slots__ = ("preview",)

    def __init__(self, inner: ToolHandler, preview: ToolHandler) -> None:
        super().__init__(inner)
        self.preview = preview

    async def __call__(self, call: ToolCall) -> Any:
        if not call.write:
            return await self.inner(call)
        from runner.engine.autonomy import level_for

        ctx, step = call.ctx, call.step
        run = ctx.run
        svc = run.services
        cfg = run.plan.loaded.spec.readiness.autonomy
        # inside a subflow: the run's own (outermost) workflow, whose runs record the writes
        workflow = run.outer_policies[0][0] if run.outer_policies else run.plan.name
        level, demoted = level_for(svc, workflow, step.name, run.envelope.tenant, cfg)
        if demoted is not None:
            svc.event(run.run_id, "autonomy_demoted", ctx.node_id, **demoted)
        if level == "dry_run":
            svc.event(run.run_id, "autonomy_dry_run", ctx.node_id, tool=step.name, key=call.key)
            if step.preview_fn is None:
                ctx.detail.on_deny = step.on_deny
                raise NodeStop(
                    "denied",
                    f"{step.name!r} is at autonomy level 'dry_run' and has no `preview`, so it "
                    "was not called (`flowrun autonomy promote` raises the level)",
                )
            return await self.preview(call)
        if level == "approval":
            approve_call(
                call,
                Decision(
                    "require_approval",
                    "autonomy",
                    f"{step.name!r} is at autonomy level 'approval'",
                ),
            )
        return await self.inner(call)


async def invoke_preview(call: ToolCall) -> Any:
    """Run a write's preview; record the planned change; return the planned result."""
    ctx, step = call.ctx, call.step
    preview = step.preview_fn
    assert preview is not None
    kwargs = dict(call.args)
    if accepts_idempotency_key(preview):
        kwargs["idempotency_key"] = call.key
    try:
        if inspect.iscoroutinefunction(preview):
            value = await preview(**kwargs)
        else:
            value = await asyncio.to_thread(preview, **kwargs)
        value = json_copy(value)
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
    ctx.detail.dry_run = True
    ctx.detail.planned = change
    ctx.run.services.event(
        ctx.run.run_id, "planned_change", ctx.node_id, tool=step.name, key=call.key, change=change
    )
    return result


class DurableWrites(ToolWrapper):
    """A live write needs the store: its ledger row is what makes the effect happen once."""

    async def __call__(self, call: ToolCall) -> Any:
        if call.write and not getattr(call.ctx.run.services, "durable", False):
            call.ctx.detail.on_deny = call.step.on_deny
            raise NodeStop(
                "denied",
                f"a live write ({call.step.name!r}) needs a run recorded in the store; "
                "run it with `flowrun execute --live`",
            )
        return await self.inner(call)


class LedgerReplay(ToolWrapper):
    """A completed effect is replayed from the ledger, not called again (retry, resume); a write
    whose outcome is unknown (intent, no result) escalates unless the tool is idempotent."""

    async def __call__(self, call: ToolCall) -> Any:
        ctx, step = call.ctx, call.step
        run, svc = ctx.run, ctx.run.services
        # a default key ("<run id>:<node>") is this run's own: the store may know it has no row
        row = svc.ledger_get(
            call.ledger_key, run_id=run.run_id if step.idempotency_key is None else None
        )
        if row is not None:
            counted = run.budget.root().counted_tools
            if row.get("run_id") == run.run_id and call.ledger_key not in counted:
                # made (or started: an intent) by an execution of this run that a crash cut
                # off: that call counts against max_tool_calls, whether it is replayed or made
                # again
                counted.add(call.ledger_key)
                run.budget.count_tool()
                ctx.usage.tool_calls += 1
            if row["status"] == "done":
                ctx.detail.ledger = "replayed"
                svc.event(run.run_id, "ledger_replayed", ctx.node_id, tool=step.name, key=call.key)
                return row["result"]
            if row["status"] == "intent" and call.write and not step.contract.idempotent:
                raise NodeStop(
                    "escalated",
                    f"the outcome of {step.name!r} with idempotency key {call.key!r} is unknown "
                    "(the call started but its result was never recorded); check the target "
                    "system, then undo or finish by hand",
                    output={"idempotency_key": call.key, "tool": step.name},
                )
        return await self.inner(call)


def call_destination(call: ToolCall) -> str | None:
    """Where the call sends data, as the tool contract's `destination` binding names it."""
    step = call.step
    if step.destination is None:
        return None
    try:
        value = step.destination.evaluate({"args": call.args, "inputs": call.ctx.run.inputs})
    except ExprError as e:
        raise NodeFailure(f"destination of {step.name!r}: {e.message}", kind="config") from None
    return value if isinstance(value, str) else json.dumps(value)


class ToolRate(ToolWrapper):
    """The rate limits that select the call (per tool, tenant, destination) are taken in the
    store, shared by every process, before it is made: at a limit it waits (bounded) or fails,
    as the limit declares (runner/engine/ceilings.py)."""

    async def __call__(self, call: ToolCall) -> Any:
        ctx = call.ctx
        budgets = budgets_of(ctx.run.services)
        if budgets.rate_limits:
            scope = call_scope(ctx, "tool", call.step.name)
            keys = rate_keys(budgets, scope, tool=call.step.name,
                             destination=call_destination(call))  # fmt: skip
            if keys:
                await acquire_rates(ctx, keys)
        return await self.inner(call)


class ToolSpend(ToolWrapper):
    """A priced tool call, or one a ceiling counts, is reserved in the store before it is made
    (at its price, or its `max_usd` for a price read from the result) against the run's max_usd
    and every ceiling that selects it, and settled at its bill after; the bill counts in the
    node's and the run's cost (runner/engine/budget.py, docs/budgets.md)."""

    async def __call__(self, call: ToolCall) -> Any:
        ctx, step = call.ctx, call.step
        run = ctx.run
        price = step.contract.price
        budgets = budgets_of(run.services)
        if price is None and not budgets.ceilings:  # perf (issue 19): no scope to build
            return await self.inner(call)
        scope = call_scope(ctx, "tool", step.name)
        if price is None and not budgets.applicable(scope):
            return await self.inner(call)
        usd = price.reserve_usd if price is not None else 0.0
        root = run.budget.root()
        cap = root.caps.max_usd
        if cap is not None and usd and root.spent_usd + root.reserved.usd + usd > cap + 1e-12:
            raise BudgetExceeded(
                "max_usd",
                f"a call of {step.name!r} costs up to ${usd:.6f} but only "
                f"${max(cap - root.spent_usd - root.reserved.usd, 0.0):.6f} of max_usd "
                f"${cap:g} is left; it was not called",
            )
        row, used = await reserve_within_ceilings(
            ctx,
            lambda: run.services.spend_reserve(
                run.run_id,
                caps={"usd": float(cap)} if cap is not None else {},
                node_id=top_node(ctx),
                at=_where(ctx),
                model=step.name,
                usd=usd,
                input_tokens=0,
                output_tokens=0,
                call=scope,
            ),
        )
        if row is None:
            raise BudgetExceeded(
                "max_usd",
                f"a call of {step.name!r} costs up to ${usd:.6f} but only "
                f"${max((cap or 0.0) - used['usd'], 0.0):.6f} of max_usd ${cap:g} is left "
                "(counting every call this run reserved); it was not called",
            )
        # durable from here: the run and node figures count the row (runner/engine/budget.py)
        tally = root.tally.setdefault(top_node(ctx), {})
        tally[row] = Usage(cost_usd=usd, tool_cost_usd=usd)
        try:
            result = await self.inner(call)
        except NodeStop:  # never called (another run holds the key)
            run.services.spend_settle(row, "released")
            del tally[row]
            raise
        except BaseException:  # it may have been called: it counts at its reservation
            run.services.spend_settle(row, "cancelled")
            self._bill(call, usd)
            raise
        billed = call.billed_usd if call.billed_usd is not None else usd
        run.services.spend_settle(row, "billed", usd=billed)
        tally[row] = Usage(cost_usd=billed, tool_cost_usd=billed)
        self._bill(call, billed)
        return result

    @staticmethod
    def _bill(call: ToolCall, usd: float) -> None:
        if not usd:
            return
        call.ctx.usage.cost_usd += usd
        call.ctx.usage.tool_cost_usd += usd
        call.ctx.run.budget.root().spent_usd += usd


def tool_price(call: ToolCall, result: Any) -> float | None:
    """A priced call's bill: its price, or the dollars its result's `from_result` field holds
    (a missing or unreadable field bills `max_usd`, the worst case)."""
    price = call.step.contract.price
    if price is None:
        return None
    if price.usd is not None:
        return float(price.usd)
    v: Any = result
    for part in (price.from_result or "").split("."):
        v = v.get(part) if isinstance(v, dict) else None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v:
        call.ctx.run.services.event(
            call.ctx.run.run_id, "tool_price_unread", call.ctx.node_id, tool=call.step.name,
            field=price.from_result, billed=price.max_usd,
        )  # fmt: skip
        return float(price.max_usd or 0.0)
    return float(v)


class ToolBudget(ToolWrapper):
    """A tool call is counted against `max_tool_calls` before it is made."""

    async def __call__(self, call: ToolCall) -> Any:
        budget = call.ctx.run.budget
        budget.reserve_tool(call.step.name)
        budget.root().counted_tools.add(call.ledger_key)
        call.ctx.usage.tool_calls += 1
        return await self.inner(call)


class LedgerRecord(ToolWrapper):
    """Intent before the call, result (or failure) after it; only a write's intent must be
    durable before the call."""

    async def __call__(self, call: ToolCall) -> Any:
        ctx, step = call.ctx, call.step
        run, svc = ctx.run, ctx.run.services
        # under max_tool_calls a read's intent is durable before the call too: a resume after
        # a crash then counts every call made (runner/engine/budget.py)
        defer = not call.write and run.budget.root().caps.max_tool_calls is None
        row = {
            "run_id": run.run_id,
            "node_id": ctx.node_id,
            "tool": step.name,
            "effect": step.contract.effect,
            "args": call.args,
            "compensate": step.contract.compensate,
            "spec_dir": str(run.plan.loaded.directory),
        }
        if call.write and not step.contract.idempotent:
            # an atomic claim: of runs racing for one key, on any machine, one calls the tool
            if not svc.ledger_claim(call.ledger_key, **row):
                return self._held(call)
        else:
            svc.ledger_intent(call.ledger_key, defer=defer, **row)
        crash_point(f"before-effect:{ctx.node_id}")
        if ctx.index is not None or ctx.run.path:
            crash_point(f"before-effect:{_where(ctx)}")
        try:
            result = await self.inner(call)
        except CallFailed as e:
            svc.ledger_failed(call.ledger_key, e.ledger_message)
            raise
        # a cancelled call (timeout, kill) leaves the intent: its outcome is unknown
        svc.ledger_done(call.ledger_key, result, defer=defer)
        return result

    @staticmethod
    def _held(call: ToolCall) -> Any:
        """Another run took the key between this run's ledger read and its claim: its result
        when it is done, else its outcome is not known here yet."""
        ctx, step = call.ctx, call.step
        run, svc = ctx.run, ctx.run.services
        row = svc.ledger_get(call.ledger_key)
        if row is not None and row["status"] == "done":
            ctx.detail.ledger = "replayed"
            svc.event(run.run_id, "ledger_replayed", ctx.node_id, tool=step.name, key=call.key)
            return row["result"]
        raise NodeStop(
            "escalated",
            f"{step.name!r} with idempotency key {call.key!r} is being called by another run "
            f"({row['run_id'] if row else 'unknown'}); its outcome is not known yet",
            output={"idempotency_key": call.key, "tool": step.name},
        )


class ResultContract(ToolWrapper):
    """A result must be JSON and match the tool's result schema, or the call failed."""

    async def __call__(self, call: ToolCall) -> Any:
        result = await self.inner(call)
        step = call.step
        crash_point(f"after-effect:{call.ctx.node_id}")
        try:
            result = json_copy(result)
        except (TypeError, ValueError) as e:
            raise CallFailed(
                f"tool {step.name!r} returned a value that is not JSON: {e}",
                ledger=f"result is not JSON: {e}",
            ) from None
        if step.result_schema is not None:
            problems = schemas.validation_errors(step.result_schema, result)
            if problems:
                raise CallFailed(
                    f"tool {step.name!r} result does not match its schema: " + "; ".join(problems),
                    kind="invalid_output",
                )
        return result


class ToolTrace(ToolWrapper):
    """The call's span and call record (runner/trace), with the raw result before checks."""

    async def __call__(self, call: ToolCall) -> Any:
        with call.ctx.run.telemetry.tool_call(call.ctx, call.step.name, call.args) as record:
            result = await self.inner(call)
            record.result(result)
            call.billed_usd = tool_price(call, result)
            if call.billed_usd is not None:
                record.billed(call.billed_usd)
        return result


async def invoke_tool(call: ToolCall) -> Any:
    """The effect itself: a Python function (a thread for a sync one) or an MCP server's tool."""
    step = call.step
    kwargs = dict(call.args)
    if step.accepts_idempotency_key:
        kwargs["idempotency_key"] = call.key
    try:
        if isinstance(step.fn, McpTool):  # an MCP server's tool, over the run's connection
            return await call_tool(step.fn, call.ctx, kwargs)
        if step.is_async:
            return await step.fn(**kwargs)
        return await asyncio.to_thread(step.fn, **kwargs)
    except (BudgetExceeded, NodeFailure, NodeStop, asyncio.CancelledError):
        raise
    except Exception as e:
        raise CallFailed(f"tool {step.name!r} raised {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------------------------------------
# model calls: one handler call is one try of one model of the route


@dataclass(slots=True)
class ModelCall:
    ctx: NodeContext
    step: LLMStep
    request: LLMRequest
    recorded: Recorded | None = None
    prompt_tokens: int = 0


ModelHandler = Callable[[ModelCall], Awaitable["LLMResponse"]]


class ModelWrapper:
    __slots__ = ("inner",)

    def __init__(self, inner: ModelHandler) -> None:
        self.inner = inner


class RecordedAnswers(ModelWrapper):
    """With a responses file, the call is answered from it; a missing entry is a config error,
    and a recording's usage gives the exact prompt size to reserve for."""

    async def __call__(self, call: ModelCall) -> LLMResponse:
        from runner.models.client import count_prompt_tokens

        ctx, step = call.ctx, call.step
        run = ctx.run
        n = run.next_call(ctx.node_id, ctx.index)
        if run.responses is not None:
            call.recorded = run.responses.get(ctx.node_id, ctx.index, n)
            if call.recorded is None and run.responses.serves(ctx.node_id):
                where = f"node {ctx.node_id!r}" + (
                    f" item {ctx.index}" if ctx.index is not None else ""
                )
                raise NodeFailure(
                    f"the responses file has no entry for {where} attempt {n}", kind="config"
                )
        call.prompt_tokens = count_prompt_tokens(call.request.model, call.request.messages)
        recorded = call.recorded
        if recorded is not None and recorded.usage is not None:
            if recorded.usage.completion_tokens > step.max_tokens:
                raise NodeFailure(
                    f"responses line {recorded.line}: completion_tokens "
                    f"{recorded.usage.completion_tokens} exceed the node's max_tokens "
                    f"{step.max_tokens}, which no provider would return",
                    kind="config",
                )
            call.prompt_tokens = max(call.prompt_tokens, recorded.usage.prompt_tokens)
        return await self.inner(call)


# provider errors that prove the call was not billed: the provider refused it, or it never
# reached the provider; anything else that ends a call early (a timeout, a cancellation, an
# unknown error) may have been billed, so the call keeps its reservation as spent
NOT_BILLED = frozenset(
    {"rate_limit", "internal_server_error", "context_window", "bad_request", "auth", "connection"}
    | {"config"}
)


def top_node(ctx: NodeContext) -> str:
    """The run's top-level node a call is made under (a map item's map, a subflow's node)."""
    path = ctx.run.path
    if not path:
        return ctx.node_id
    for i, ch in enumerate(path):
        if ch in "[#/":
            return path[:i]
    return path


def _where(ctx: NodeContext) -> str:
    return ctx.run.path + ctx.node_id + (f"[{ctx.index}]" if ctx.index is not None else "")


class ModelCache(ModelWrapper):
    """A node with `cache:` reuses the answer to an exactly equal call (model, messages, output
    schema, parameters, prompt template), kept in the store: a hit is not reserved, not rate
    limited, not made, and costs nothing; each tenant's answers are its own unless the node
    declares them shared."""

    async def __call__(self, call: ModelCall) -> LLMResponse:
        from runner.models.client import LLMResponse

        cache = call.step.cache
        if cache is None:
            return await self.inner(call)
        ctx = call.ctx
        run, svc = ctx.run, ctx.run.services
        tenant = None if cache.shared else run.envelope.tenant
        key = cache_key(call, tenant, shared=cache.shared)
        hit = svc.cache_get(key)
        if hit is not None and (cache.ttl is None or time.time() - hit["created_at"] <= cache.ttl):
            r = hit["response"]
            ctx.detail.cache_hits += 1
            ctx.model = call.request.model
            svc.event(run.run_id, "cache_hit", ctx.node_id, model=r["model"], key=key[:16],
                      index=ctx.index)  # fmt: skip
            return LLMResponse(
                content=r["content"],
                model=r["model"],
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=0.0,
                finish_reason=r.get("finish_reason"),
                latency_s=0.0,
            )
        resp = await self.inner(call)
        svc.cache_put(
            key,
            tenant=tenant,
            model=resp.model,
            response={
                "content": resp.content,
                "model": resp.model,
                "finish_reason": resp.finish_reason,
                "prompt_tokens": resp.prompt_tokens,
                "completion_tokens": resp.completion_tokens,
            },
        )
        return resp


def cache_key(call: ModelCall, tenant: str | None, *, shared: bool) -> str:
    """The exact-match key of a model call: what it asks, of which model, how, from which
    prompt template; and whose answers it may reuse (a tenant's own, or the shared ones)."""
    import hashlib

    req, step = call.request, call.step
    prompt = hashlib.sha256(
        (step.prompt.source + "\0" + (step.system.source if step.system else "")).encode()
    ).hexdigest()
    body = {
        "v": 1,
        "who": "shared" if shared else ["tenant", tenant],
        "model": req.model,
        "messages": req.messages,
        "output_schema": req.output_schema,
        "schema_name": req.schema_name,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "params": req.params,
        "prompt": prompt,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ModelRate(ModelWrapper):
    """A model route's rate limits (calls, or tokens: the prompt plus max_tokens, per window),
    taken in the store and shared by every process before the call is reserved and made."""

    async def __call__(self, call: ModelCall) -> LLMResponse:
        ctx = call.ctx
        budgets = budgets_of(ctx.run.services)
        if budgets.rate_limits:
            keys = rate_keys(budgets, call_scope(ctx, "llm"), model=call.request.model,
                             alias=call.step.alias)  # fmt: skip
            if keys:
                await acquire_rates(ctx, keys, call.prompt_tokens + call.step.max_tokens)
        return await self.inner(call)


class ModelBudget(ModelWrapper):
    """Reserve the call's most expensive outcome before it, settle what was billed after it;
    the rule is in runner/engine/budget.py."""

    async def __call__(self, call: ModelCall) -> LLMResponse:
        ctx, step = call.ctx, call.step
        run = ctx.run
        budget, model = run.budget, call.request.model
        prompt, limit = call.prompt_tokens, step.max_tokens
        usd = costliest((model, *step.route.models), prompt, limit)
        reservation = budget.reserve_llm(usd=usd, tokens=prompt + limit, model=model)
        root = budget.root()
        caps = root.caps
        top = top_node(ctx)
        scope = call_scope(ctx, "llm")
        try:
            row, used = await reserve_within_ceilings(
                ctx,
                lambda: run.services.spend_reserve(
                    run.run_id,
                    caps={
                        dim: float(cap)
                        for dim, cap in (
                            ("usd", caps.max_usd),
                            ("tokens", caps.max_tokens),
                            ("llm_calls", caps.max_llm_calls),
                        )
                        if cap is not None
                    },
                    node_id=top,
                    at=_where(ctx),
                    model=model,
                    usd=usd,
                    input_tokens=prompt,
                    output_tokens=limit,
                    call=scope,
                ),
            )
        except BaseException:
            budget.release(reservation)
            raise
        if row is None:
            budget.release(reservation)
            raise _refused(caps, used, model, usd, prompt + limit)
        # the reservation is durable: from here a crash counts the call at its reservation
        tally = root.tally.get(top)
        if tally is None:
            tally = root.tally[top] = {}
        reserved = Usage(llm_calls=1, input_tokens=prompt, output_tokens=limit, cost_usd=usd)
        tally[row] = reserved
        usage = ctx.usage
        crash_point(f"call:{_where(ctx)}")
        try:
            resp = await self.inner(call)
        except BaseException as e:
            if getattr(e, "kind", None) in NOT_BILLED and not isinstance(e, NodeFailure):
                budget.release(reservation)
                run.services.spend_settle(row, "released")
                del tally[row]
            else:  # cut off in flight, or it may have reached the provider: counted as billed
                budget.settle_llm(reservation, usd=usd, tokens=prompt + limit)
                run.services.spend_settle(row, "cancelled")
                usage += reserved
            raise
        billed = Usage(
            llm_calls=1,
            input_tokens=resp.prompt_tokens,
            output_tokens=resp.completion_tokens,
            cost_usd=resp.cost_usd,
        )
        budget.settle_llm(reservation, usd=resp.cost_usd, tokens=billed.tokens)
        run.services.spend_settle(
            row,
            "billed",
            usd=resp.cost_usd,
            input_tokens=resp.prompt_tokens,
            output_tokens=resp.completion_tokens,
            model=resp.model,
        )
        tally[row] = billed
        usage += billed
        ctx.model = model
        return resp


def _refused(caps: Any, used: dict[str, float], model: str, usd: float, tokens: int) -> Exception:
    """The run's spend rows (earlier executions and other workers included) leave no room."""
    why = "counting every call this run reserved, before a crash or on another worker too"
    if caps.max_llm_calls is not None and used["llm_calls"] + 1 > caps.max_llm_calls:
        return BudgetExceeded(
            "max_llm_calls",
            f"max_llm_calls {caps.max_llm_calls} reached ({why}); the call to {model} was not made",
        )
    if caps.max_usd is not None and used["usd"] + usd > caps.max_usd + 1e-12:
        left = max(caps.max_usd - used["usd"], 0.0)
        return BudgetExceeded(
            "max_usd",
            f"a call to {model} could cost up to ${usd:.6f} but only ${left:.6f} of "
            f"max_usd ${caps.max_usd:g} is left ({why}); the call was not made",
        )
    left_tokens = max(int((caps.max_tokens or 0) - used["tokens"]), 0)
    return BudgetExceeded(
        "max_tokens",
        f"a call to {model} could use up to {tokens} tokens but only {left_tokens} of "
        f"max_tokens {caps.max_tokens} are left ({why}); the call was not made",
    )


class ModelTrace(ModelWrapper):
    """The call's span, call record and transcript line (runner/trace)."""

    async def __call__(self, call: ModelCall) -> LLMResponse:
        with call.ctx.run.telemetry.llm_call(call.ctx, call.request) as record:
            resp = await self.inner(call)
            record.response(resp)
        return resp


async def complete_model(call: ModelCall) -> LLMResponse:
    """The provider (or the recorded answer)."""
    from runner.models.client import complete

    return await complete(call.request, call.recorded)
