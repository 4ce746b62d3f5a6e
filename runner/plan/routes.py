"""Model routes: a spec's aliases resolved for one profile (a profile swaps models, not aliases)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.plan.model import Plan, Route
from runner.spec.loader import PathKey
from runner.spec.models import ModelConfig, Spec


def resolve_routes(spec: Spec, profile: str | None) -> dict[str, Route]:
    base: dict[str, ModelConfig] = {}
    for alias, route in spec.models.items():
        base[alias] = route if isinstance(route, ModelConfig) else ModelConfig(model=route)
    if profile is not None:
        for alias, route in spec.profiles.get(profile, {}).items():
            if isinstance(route, ModelConfig):
                base[alias] = route
            else:
                # a bare model id in a profile keeps the alias's parameters, swaps the model
                old = base.get(alias)
                base[alias] = (
                    old.model_copy(update={"model": route, "fallbacks": []})
                    if old
                    else ModelConfig(model=route)
                )
    return {a: Route(alias=a, config=c) for a, c in base.items()}


def model_path(spec: Spec, profile: str | None, model: str) -> PathKey:
    """Where a litellm model id is written (chosen profile first), for diagnostics."""
    tables: list[tuple[PathKey, Mapping[str, Any]]] = []
    if profile in spec.profiles:
        assert profile is not None
        tables.append((("profiles", profile), spec.profiles[profile]))
    tables.append((("models",), spec.models))
    for prefix, table in tables:
        for alias, route in table.items():
            if route == model:
                return (*prefix, alias)
            if isinstance(route, ModelConfig):
                if route.model == model:
                    return (*prefix, alias, "model")
                if model in route.fallbacks:
                    return (*prefix, alias, "fallbacks", route.fallbacks.index(model))
    return ("models",)


def plan_models(plan: Plan) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """Every litellm model id a run of `plan` can call (routes and their fallbacks, inside maps,
    loops and subflows too): model -> (its route's params, the aliases that route to it)."""
    found: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}

    def visit(p: Plan) -> None:
        for node in p.nodes.values():
            for n in (node, node.map.inner if node.map is not None else None):
                if n is not None and n.llm is not None:
                    route = n.llm.route
                    for model in route.models:
                        params, aliases = found.get(model, (dict(route.config.params), ()))
                        if route.alias not in aliases:
                            aliases = (*aliases, route.alias)
                        found[model] = (params, aliases)
            if node.loop is not None:
                visit(node.loop.body)
            if node.flow is not None:
                visit(node.flow.plan)

    visit(plan)
    return found
