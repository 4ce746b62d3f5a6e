"""llm: render the prompt, ask for structured output, validate it, re-ask with the errors."""

from __future__ import annotations

import dataclasses
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


def _token_room(ctx: NodeContext, step: LLMStep, messages: list[dict[str, str]]) -> int | None:
    """Output tokens the run's max_tokens and max_usd caps leave for one more ask (None: no cap),
    priced at every model the ask may be billed at (the route's model and its fallbacks)."""
    from runner.models.client import count_prompt_tokens
    from runner.models.pricing import price_of

    budget = ctx.run.budget
    prompt = count_prompt_tokens(step.route.models[0], messages)
    rooms: list[int] = []
    if budget.caps.max_tokens is not None:
        used = budget.spent_tokens + budget.reserved.tokens
        rooms.append(budget.caps.max_tokens - used - prompt)
    usd = budget.remaining_usd()
    for model in step.route.models if usd is not None else ():
        price = price_of(model)
        if usd is not None and price is not None and price.output_per_token > 0:
            rooms.append(int((usd - price.input_per_token * prompt) / price.output_per_token))
    return min(rooms) if rooms else None


def _raised(ctx: NodeContext, step: LLMStep, limit: int, messages: list[dict[str, str]]) -> int:
    """The token limit of the ask after a cut-off: doubled, as far as the run's budget allows.

    The run's caps stay hard: the call still reserves its worst case, so a raise never lets it
    spend past them; a limit the budget cannot raise stays, and the re-ask asks for less.
    """
    room = _token_room(ctx, step, messages)
    raised = 2 * limit if room is None else min(2 * limit, room)
    return max(limit, raised)


def _cut_off(node_id: str, limit: int, content: str, tokens: int) -> str:
    return (
        f"the answer was cut off at the token limit (node {node_id!r}, max_tokens {limit}): "
        f"it stopped after {tokens} tokens and {len(content)} characters, before the JSON closed"
    )


async def run(ctx: NodeContext, step: LLMStep | None = None) -> Any:
    step = step or ctx.node.llm
    assert step is not None
    first = build_messages(ctx, step)
    messages = first
    problems: list[str] = []
    limit = step.max_tokens
    cut = False
    for _ in range(step.max_attempts):
        # asks add up over the node's retries, so `attempts` counts every question put to a model
        ctx.detail.asks += 1
        ask = step if limit == step.max_tokens else dataclasses.replace(step, max_tokens=limit)
        resp = await call_llm(ctx, ask, messages)
        if step.output_schema is None:
            return resp.content
        cut = resp.finish_reason == "length"
        try:
            value = _parse(resp.content)
        except ValueError as e:
            problems = [
                _cut_off(ctx.node_id, limit, resp.content, resp.completion_tokens)
                if cut
                else f"the answer is not valid JSON ({e})"
            ]
        else:
            cut = False  # a whole answer, even at the limit: correct it like any other
            problems = schemas.validation_errors(step.output_schema, value)
            if not problems:
                return value
        ctx.detail.rejected.append("; ".join(problems))
        if cut:
            # the cut text is no answer to correct: ask afresh, shorter, with more room if any
            ctx.detail.cut_off.append(
                {"max_tokens": limit, "tokens": resp.completion_tokens, "chars": len(resp.content)}
            )
            messages = [
                *first[:-1],
                {
                    "role": "user",
                    "content": first[-1]["content"]
                    + "\n\nKeep the answer short: your last answer ran past the token limit "
                    "and was cut off. Write one short sentence at most in each text field.",
                },
            ]
            limit = _raised(ctx, step, limit, messages)
            continue
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
    hint = ""
    if cut:
        hint = (
            f"; raise the node's max_tokens (now {step.max_tokens}) or bound its output schema "
            "(maxLength on strings, maxItems on arrays, shorter text asked for in the prompt)"
        )
    raise NodeFailure(
        f"the answer did not match the output schema after {step.max_attempts} asks: "
        + "; ".join(problems)
        + hint,
        kind="invalid_output",
    )
