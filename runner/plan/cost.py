"""Worst-case spend of a plan, priced from litellm's bundled price map without importing litellm."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from runner.models.pricing import estimate_tokens, price_of
from runner.plan.model import CostEstimate, LLMStep, Plan, PlanNode, Route
from runner.plan.routes import resolve_routes

FlowPricer = Callable[[Plan], CostEstimate]


def _prompt_estimate(step: LLMStep) -> int:
    text = step.prompt.source + (step.system.source if step.system else "")
    if step.output_schema is not None:
        text += json.dumps(step.output_schema)
    return estimate_tokens(text)


def llm_calls_bound(node: PlanNode) -> tuple[LLMStep | None, int]:
    """A node's LLM step and its most calls (re-asks × retries × fan-out)."""
    step, fan = (node.llm, 1)
    retry = node.retry.max_attempts
    if node.map is not None:
        step, fan = node.map.inner.llm, node.map.max_items
        retry = node.map.inner.retry.max_attempts
    if step is None:
        return None, 0
    return step, step.max_attempts * retry * fan


def estimate_cost(
    nodes: Mapping[str, PlanNode],
    routes: Mapping[str, Route] | None = None,
    flows: FlowPricer | None = None,
) -> CostEstimate:
    """Worst case per node; `routes` re-prices the same plan under another profile's routes,
    and `flows` its subflows (see cost_under)."""
    per_node: dict[str, float] = {}
    unpriced: set[str] = set()
    total_calls = 0
    total_out = 0
    for node_id, node in nodes.items():
        sub = composite_cost(node, routes, flows)
        if sub is not None:
            per_node[node_id] = sub.usd
            total_calls += sub.llm_calls
            total_out += sub.output_tokens
            unpriced.update(sub.unpriced_models)
            continue
        step, calls = llm_calls_bound(node)
        if step is None:
            continue
        prompt_tokens = _prompt_estimate(step)
        worst = 0.0
        route = routes.get(step.alias, step.route) if routes is not None else step.route
        for model in route.models:
            price = price_of(model)
            if price is None:
                unpriced.add(model)
                continue
            worst = max(
                worst,
                price.input_per_token * prompt_tokens + price.output_per_token * step.max_tokens,
            )
        per_node[node_id] = worst * calls
        total_calls += calls
        total_out += step.max_tokens * calls
    return CostEstimate(
        usd=sum(per_node.values()),
        llm_calls=total_calls,
        output_tokens=total_out,
        per_node=per_node,
        unpriced_models=tuple(sorted(unpriced)),
    )


def composite_cost(
    node: PlanNode, routes: Mapping[str, Route] | None = None, flows: FlowPricer | None = None
) -> CostEstimate | None:
    """Worst case of a subflow (its own plan's), a loop (body × max_iterations), × map items."""
    inner, fan = (node.map.inner, node.map.max_items) if node.map is not None else (node, 1)
    if inner.flow is not None:
        # a child is priced under its own routes (for the profile being priced, when given)
        est, times = (flows(inner.flow.plan) if flows else inner.flow.plan.cost), 1
    elif inner.loop is not None:
        est = estimate_cost(inner.loop.body.nodes, routes, flows)
        times = inner.loop.max_iterations
    else:
        return None
    k = fan * times * inner.retry.max_attempts
    return CostEstimate(
        usd=est.usd * k,
        llm_calls=est.llm_calls * k,
        output_tokens=est.output_tokens * k,
        per_node={},
        unpriced_models=est.unpriced_models,
    )


def cost_under(plan: Plan, profile: str | None) -> CostEstimate:
    """The plan's worst case had it been compiled under `profile` (None: the default routes):
    its own routes for that profile, and every subflow priced the same way (a child without
    that profile under its default routes, as it would run)."""
    if profile == plan.profile:
        return plan.cost
    spec = plan.loaded.spec
    routes = resolve_routes(spec, profile if profile in spec.profiles else None)
    return estimate_cost(plan.nodes, routes, lambda child: cost_under(child, profile))
