"""Bounded output schemas: every answer the grammar admits closes within the token limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.models.bounds import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_LENGTH,
    Unbounded,
    bound_schema,
    longest,
)
from runner.plan.compile import compile_plan
from runner.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
REFERENCE = ("support_refund", "crm_hygiene", "incident_triage", "invoice_reconciliation")


def local_llm_steps() -> list[tuple[str, dict[str, Any], int]]:
    """(spec/node, output schema, max_tokens) of every LLM node on the `local` profile."""
    out = []
    for name in REFERENCE:
        plan = compile_plan(load_spec(REPO / "specs" / f"{name}.yaml"), profile="local")
        for node in plan.nodes.values():
            step = node.llm
            if step is not None and step.output_schema is not None:
                out.append((f"{name}/{node.id}", step.output_schema, step.max_tokens))
    return out


STEPS = local_llm_steps()


@pytest.mark.parametrize(("where", "schema", "max_tokens"), STEPS, ids=[s[0] for s in STEPS])
def test_reference_answers_close_within_their_token_limit(
    where: str, schema: dict[str, Any], max_tokens: int
) -> None:
    bounded = bound_schema(schema, max_tokens)
    assert longest(bounded) <= max_tokens, where


def test_free_strings_and_arrays_get_default_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"],
    }
    bounded = bound_schema(schema, 100_000)
    tags = bounded["properties"]["tags"]
    assert (tags["maxItems"], tags["items"]["maxLength"]) == (DEFAULT_MAX_ITEMS, DEFAULT_MAX_LENGTH)
    assert "maxItems" not in schema["properties"]["tags"]  # the node's own schema is untouched
    with pytest.raises(Unbounded):
        longest(schema)


def test_patterns_get_bounded_repetition() -> None:
    schema = {"type": "string", "pattern": "^INV-[0-9]+$"}
    assert bound_schema(schema, 1000)["pattern"] == "^INV-[0-9]{1,12}$"
    capped = {"type": "string", "pattern": "^[a-z][a-z +*]*$", "maxLength": 40}
    assert bound_schema(capped, 1000)["pattern"] == "^[a-z][a-z +*]{0,40}$"
    assert longest(bound_schema(capped, 1000)) == 2 + 41 + 1


def test_tightening_keeps_the_schema_minimums_and_stays_within_the_original() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "properties": {"why": {"type": "string", "minLength": 5, "maxLength": 400}},
                    "required": ["why"],
                },
            }
        },
        "required": ["items"],
    }
    bounded = bound_schema(schema, 120)
    items = bounded["properties"]["items"]
    assert longest(bounded) <= 120
    assert 1 <= items["maxItems"] <= 10
    assert 5 <= items["items"]["properties"]["why"]["maxLength"] <= 400
    # the longest answer of the bounded schema is valid against the original
    answer = {"items": [{"why": "x" * items["items"]["properties"]["why"]["maxLength"]}]}
    answer["items"] *= items["maxItems"]
    jsonschema.validate(answer, schema)
    assert len(json.dumps(answer)) <= 120


def test_yaml_anchors_are_bounded_separately() -> None:
    note = {"type": "string", "maxLength": 300}
    schema = {"type": "object", "properties": {"a": note, "b": note}}
    bounded = bound_schema(schema, 100)
    assert bounded["properties"]["a"] is not bounded["properties"]["b"]
    assert longest(bounded) <= 100


def test_free_form_objects_keep_their_defaults_only() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "object"}}}
    assert bound_schema(schema, 50) == schema


def test_bounded_reference_schemas_compile_to_a_grammar() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    for where, schema, max_tokens in STEPS:
        grammar = llama_grammar.json_schema_to_gbnf(json.dumps(bound_schema(schema, max_tokens)))
        assert "root ::=" in grammar, where
