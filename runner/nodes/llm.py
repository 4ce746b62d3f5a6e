"""llm: render the prompt, ask for structured output, validate it, re-ask with the errors."""

from __future__ import annotations

import json
from typing import Any

from runner.engine.calls import call_llm
from runner.engine.context import NodeContext, NodeFailure
from runner.expr.templates import TemplateError
from runner.plan import schemas
from runner.plan.model import LLMStep

INSTRUCTION = (
    "Answer with one JSON object only, no prose and no code fence, matching this JSON Schema:\n"
)


def _parse(content: str) -> Any:
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return json.loads(text)


def build_messages(ctx: NodeContext, step: LLMStep) -> list[dict[str, str]]:
    act = ctx.activation()
    try:
        prompt = step.prompt.render(act)
        system = step.system.render(act) if step.system is not None else ""
    except TemplateError as e:
        raise NodeFailure(f"prompt could not be rendered: {e.message}", kind="config") from None
    if step.output_schema is not None:
        schema = json.dumps(step.output_schema, sort_keys=True)
        system = (system + "\n\n" if system else "") + INSTRUCTION + schema
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return messages


async def run(ctx: NodeContext, step: LLMStep | None = None) -> Any:
    step = step or ctx.node.llm
    assert step is not None
    messages = build_messages(ctx, step)
    problems: list[str] = []
    for _ in range(step.max_attempts):
        # asks add up over the node's retries, so `attempts` counts every question put to a model
        ctx.detail["asks"] = ctx.detail.get("asks", 0) + 1
        resp = await call_llm(ctx, step, messages)
        if step.output_schema is None:
            return resp.content
        try:
            value = _parse(resp.content)
        except ValueError as e:
            problems = [f"the answer is not valid JSON ({e})"]
        else:
            problems = schemas.validation_errors(step.output_schema, value)
            if not problems:
                return value
        ctx.detail.setdefault("rejected", []).append("; ".join(problems))
        messages = [
            *messages,
            {"role": "assistant", "content": resp.content},
            {
                "role": "user",
                "content": "Your answer was rejected:\n- "
                + "\n- ".join(problems)
                + "\nReply again with only the corrected JSON object.",
            },
        ]
    raise NodeFailure(
        f"the answer did not match the output schema after {step.max_attempts} asks: "
        + "; ".join(problems),
        kind="invalid_output",
    )
