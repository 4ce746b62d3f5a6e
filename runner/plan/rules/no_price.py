"""no-price (warning): a model litellm's price map does not know counts as $0 in estimates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import Diagnostic
from runner.plan.model import CostEstimate
from runner.plan.routes import model_path

RULE = "no-price"


def check(compiler: Any, cost: CostEstimate) -> Iterable[Diagnostic]:
    for model in cost.unpriced_models:
        yield compiler.src.diag(
            model_path(compiler.spec, compiler.profile, model),
            RULE,
            f"litellm's price map has no price for {model!r}; its cost counts as $0",
            hint="check the model id, or use a `local/` model (free) if it runs here",
            severity="warning",
        )
