"""Validation rules, one module per rule id (see docs/checks.md), in three registries by what
they need: the spec (SPEC_RULES, before nodes compile), the compiled graph (GRAPH_RULES), and
the compiled nodes (PLAN_RULES, e.g. tool effects resolved from an MCP lock). Rules that belong
to one node kind's syntax live with the kind (runner/plan/kinds/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.errors import Diagnostic
from runner.plan.digraph import DiGraph
from runner.plan.rules import (
    cel_types,
    duplicate_policy_id,
    mcp,
    needs_cycle,
    profile_alias,
    tainted_write,
    ungated_write,
    unknown_profile,
    unreachable_node,
    write_never_allowed,
)

if TYPE_CHECKING:
    from runner.plan.model import PlanNode

SPEC_RULES = (
    unknown_profile.check,
    profile_alias.check,
    duplicate_policy_id.check,
)

PLAN_RULES = (write_never_allowed.check,)

GRAPH_RULES = (
    needs_cycle.check,
    unreachable_node.check,
    ungated_write.check,
    tainted_write.check,
    cel_types.check,
)

# Every rule id the loader and compiler can report, with what it means (README and docs list them).
RULES: dict[str, str] = {
    "file-not-found": "the spec or a file it names does not exist",
    "file-unreadable": "the spec cannot be read",
    "file-outside-project": "a file the spec names resolves outside its project folder",
    "not-utf8": "the spec is not UTF-8 text",
    "spec-too-large": "the spec is over 4 MiB or expands to too many YAML nodes",
    "empty-spec": "the spec file is empty",
    "yaml-syntax": "the file is not valid YAML",
    "yaml-alias-cycle": "a YAML alias is used inside the value of its own anchor",
    "duplicate-key": "a mapping repeats a key",
    "invalid-key": "a mapping key is not a plain string",
    "not-a-mapping": "the document is not a mapping",
    "api-version": "apiVersion is not flowrun/v1",
    "unknown-key": "a key the spec language does not define",
    "missing-key": "a required key is missing",
    "invalid-value": "a value has the wrong type or form",
    "node-kind": "a node has none or several of llm, tool, gate, switch, map, approval, flow, loop",
    "unknown-node": "a reference to a node that is not defined",
    "unknown-model": "a model alias that `models` does not define",
    "unknown-tool": "a tool that `tools` does not define",
    "unknown-profile": "--profile names a profile the spec does not define",
    "unknown-impl": "a tool implementation that cannot be imported",
    "unknown-arg": "a tool argument the tool does not take",
    "missing-arg": "a required tool argument is missing",
    "invalid-arg": "a literal tool argument that fails the tool's schema",
    "unknown-name": "an expression uses a name that is not in scope",
    "unknown-field": "a reference to a field the upstream schema lacks",
    "dynamic-ref": "a node referenced by a computed id",
    "self-reference": "a node that needs or references itself",
    "cel-syntax": "a CEL expression or ${{ }} binding that does not parse",
    "template-syntax": "a Jinja2 prompt that does not parse",
    "invalid-json-schema": "a JSON Schema that is not valid",
    "schema-ref": "a JSON Schema $ref that is not local, points at nothing, or loops",
    "map-not-array": "a map over a value that is not a list",
    "flow-not-found": "a subflow path that does not exist",
    "flow-invalid": "a subflow spec that does not validate (its problems follow, in its file)",
    "flow-recursion": "subflows that include each other (the chain is printed)",
    "loop-bound": "a loop without max_iterations, or with one outside 1..100",
    "needs-cycle": "the dependency graph has a cycle",
    "unreachable-node": "a node that can never run",
    "ungated-write": "a write tool node that can run without passing a gate or approval",
    "tainted-write": "a write argument from untrusted data that no gate checks and no one approves",
    "duplicate-policy-id": "two policy rules share an id",
    "cedar-syntax": "a Cedar policy file that does not parse",
    "write-never-allowed": "warning: a write tool that no policy can allow",
    "no-price": "warning: a model litellm has no price for (counted as $0)",
    **cel_types.RULES,  # CEL typed by the schemas (runner/plan/rules/cel_types.py)
    **mcp.RULES,  # MCP tool contracts (runner/plan/rules/mcp.py)
}


def graph_rules(
    compiler: Any,
    graph: DiGraph[str],
    nodes: Mapping[str, PlanNode],
    switches_of: Mapping[str, list[str]],
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for rule in GRAPH_RULES:
        out.extend(rule(compiler, graph, nodes, switches_of))
    return out


def spec_rules(compiler: Any) -> list[Diagnostic]:
    return [d for rule in SPEC_RULES for d in rule(compiler)]


def plan_rules(compiler: Any) -> list[Diagnostic]:
    return [d for rule in PLAN_RULES for d in rule(compiler)]
