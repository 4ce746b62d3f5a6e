"""Tool arguments typed with nested TypedDicts: the derived schema resolves and is enforced."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typing_extensions import TypedDict

from runner.engine.run import execute
from runner.errors import SpecError
from runner.plan.compile import compile_plan
from runner.spec import load_spec_text


class Line(TypedDict):
    """One posting line: cents, so that sums are exact."""

    sku: str
    cents: int


class Batch(TypedDict):
    """Another type with its own definitions, as a second parameter."""

    lines: list[Line]
    memo: str


def post_lines(lines: list[Line], batch: Batch | None = None) -> dict[str, int]:
    """Sum the lines (and the batch's, when given)."""
    more = batch["lines"] if batch else []
    return {"count": len(lines) + len(more), "cents": sum(x["cents"] for x in [*lines, *more])}


SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: nested-args}}
tools:
  post_lines: {{impl: tests.unit.test_nested_args:post_lines}}
nodes:
  post:
    tool: post_lines
    args:
      lines: {lines}
      batch: {{lines: [{{sku: B, cents: 5}}], memo: "m"}}
outputs:
  total: "${{{{ nodes.post.output.cents }}}}"
"""
WHERE = str(Path(__file__).resolve().parent / "nested.yaml")


def test_list_of_typed_dicts_validates_and_runs() -> None:
    plan = compile_plan(
        load_spec_text(SPEC.format(lines="[{sku: A, cents: 150}, {sku: C, cents: 25}]"), WHERE)
    )
    result = asyncio.run(execute(plan, {}))
    assert result.status == "succeeded", result.reason
    assert result.outputs == {"total": 180}


def test_a_static_argument_of_the_wrong_shape_is_a_compile_error() -> None:
    text = SPEC.format(lines="[{sku: A, cents: lots}]")
    try:
        compile_plan(load_spec_text(text, WHERE))
    except SpecError as e:
        rendered = e.render()
    else:
        raise AssertionError("a string where the TypedDict says int compiled")
    assert "invalid-arg" in rendered and "lines" in rendered, rendered


def test_a_bound_argument_of_the_wrong_shape_fails_the_node_not_the_engine() -> None:
    text = SPEC.format(lines="\"${{ [{'sku': 'A', 'cents': 'lots'}] }}\"")
    plan = compile_plan(load_spec_text(text, WHERE))
    result = asyncio.run(execute(plan, {}))
    assert result.status == "failed"
    post = result.nodes["post"]
    assert post.status == "failed"
    assert "cents" in (post.error or ""), post.error
