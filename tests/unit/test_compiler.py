"""Loader and compiler through their public interfaces: files, hints, plan shape, routes, cost."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import files
from runner.cli import cli
from runner.errors import Diagnostic, SpecError
from runner.models.pricing import estimate_tokens, price_of
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ERR = FIXTURES / "err"
OK = FIXTURES / "ok"
TOOLS = "tools_fixture"  # tests/fixtures/tools_fixture.py, copied next to specs made in tmp_path

MINIMAL = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: tiny}
models:
  small: openai/gpt-4o-mini
nodes:
  reply: {llm: small, prompt: Write a short greeting.}
"""


def _errors(path: Path, profile: str | None = None) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        compile_plan(load_spec(path), profile)
    return info.value.diagnostics


def _only(path: Path, profile: str | None = None) -> Diagnostic:
    diags = _errors(path, profile)
    assert len(diags) == 1, [d.render() for d in diags]
    return diags[0]


def _plan(tmp_path: Path, text: str, profile: str | None = None, name: str = "spec.yaml") -> Plan:
    shutil.copy(FIXTURES / "tools_fixture.py", tmp_path)  # specs import tools from their folder
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_plan(load_spec(path), profile)


# -- rules about the file itself --------------------------------------------------------------


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    d = _only(tmp_path / "nope.yaml")
    assert (d.rule, d.line, d.col) == ("file-not-found", 1, 1)
    assert "nope.yaml" in d.message


def test_directory_is_file_not_found(tmp_path: Path) -> None:
    d = _only(tmp_path)
    assert d.rule == "file-not-found"
    assert "is a directory" in d.message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    def denied(self: Path, **_: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    # root reads any file whatever its mode, so the OS refusal is simulated
    monkeypatch.setattr(files, "read_bytes", denied)
    d = _only(path)
    assert (d.rule, d.line, d.col) == ("file-unreadable", 1, 1)
    assert "Permission denied" in d.message


def test_invalid_utf8_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    d = _only(path)
    assert d.rule == "not-utf8"
    assert f"byte {len(MINIMAL.encode()) + 5}" in d.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_empty_spec(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    d = _only(path)
    assert (d.rule, d.line, d.col) == ("empty-spec", 1, 1)
    assert d.hint


def test_file_over_4_mib_is_spec_too_large(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(MINIMAL + "# padding\n" * (420 * 1024), encoding="utf-8")
    assert path.stat().st_size > 4 * 1024 * 1024
    d = _only(path)
    assert d.rule == "spec-too-large"
    assert "4 MiB" in d.message


def test_alias_bomb_is_spec_too_large(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(MINIMAL + "\n".join(lines) + "\n", encoding="utf-8")
    d = _only(path)
    assert d.rule == "spec-too-large"
    assert "aliases" in d.message


def test_deep_nesting_is_spec_too_large_not_a_crash(tmp_path: Path) -> None:
    lines = ["  " * i + f"k{i}:" for i in range(300)]
    path = tmp_path / "deep.yaml"
    path.write_text(MINIMAL + "extra:\n" + "\n".join("  " + line for line in lines) + " x\n")
    d = _only(path)
    assert d.rule == "spec-too-large"
    assert d.message == "spec nests deeper than 200 levels"


# -- messages and hints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "profile", "hint"),
    [
        ("unknown-key.yaml", None, "did you mean 'prompt'?"),
        ("unknown-key-did-you-mean.yaml", None, "did you mean 'max_tokens'?"),
        ("unknown-node.yaml", None, "did you mean 'intake'?"),
        ("unknown-tool.yaml", None, "did you mean 'get_order'?"),
        ("unknown-model.yaml", None, "did you mean 'small'?"),
        ("unknown-name.yaml", None, "did you mean 'inputs'?"),
        ("unknown-arg.yaml", None, "did you mean 'limit'?"),
        ("unknown-field.yaml", None, "did you mean 'email'?"),
        ("unknown-field-llm-output.yaml", None, "did you mean 'category'?"),
        ("unknown-profile.yaml", "prdo", "did you mean 'prod'?"),
        ("unknown-node-prompt-file.yaml", None, "did you mean 'classify'?"),
    ],
)
def test_did_you_mean_hints(fixture: str, profile: str | None, hint: str) -> None:
    d = _only(ERR / fixture, profile)
    assert d.hint == hint
    assert d.render().splitlines()[1] == f"  hint: {hint}"


def test_unknown_field_without_a_close_name_lists_the_fields() -> None:
    d = _only(ERR / "unknown-field-prompt.yaml")
    assert d.message == "nodes.intake.output has no field 'total' in its schema"
    assert d.hint == "nodes.intake.output has: amount_usd, email, items, order_id, status"


def test_llm_output_field_message_names_the_path() -> None:
    d = _only(ERR / "unknown-field-llm-output.yaml")
    assert d.message == "nodes.classify.output has no field 'categroy' in its schema"


def test_cycle_prints_every_node_from_the_earliest() -> None:
    d = _only(ERR / "needs-cycle-three.yaml")
    assert d.message == 'cycle "a" -> "b" -> "c" -> "a"'
    assert (d.line, d.col) == (8, 3)


def test_unknown_impl_names_the_closest_function() -> None:
    d = _only(ERR / "unknown-impl.yaml")
    assert "has no attribute 'get_ordr'; did you mean 'get_order'?" in d.message


def test_invalid_type_in_schema_suggests_enum() -> None:
    d = _only(ERR / "invalid-json-schema.yaml")
    assert d.message.startswith("'enum' is not a JSON Schema type")
    assert d.hint is not None and "enum: [...]" in d.hint


def test_duplicate_key_cites_the_first_definition() -> None:
    d = _only(ERR / "duplicate-key.yaml")
    assert d.message == "key 'reply' is duplicated; previously defined at line:8,col:3"


def test_yaml_syntax_says_where_the_unclosed_mapping_started() -> None:
    d = _only(ERR / "yaml-syntax.yaml")
    assert "started at line:8,col:11" in d.message


def test_every_independent_problem_is_reported_in_one_run() -> None:
    rules = [d.rule for d in _errors(ERR / "multiple-problems.yaml")]
    assert rules == ["unknown-tool", "cel-syntax", "unknown-field"]


def test_cli_prints_diagnostics_and_exits_2_without_traceback() -> None:
    path = ERR / "multiple-problems.yaml"
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    located = [
        line for line in lines if re.match(rf"^{re.escape(str(path))}:\d+:\d+: [a-z-]+: .+", line)
    ]
    assert len(located) == 3
    assert lines[-1] == "3 problems found"
    assert "Traceback" not in result.output


def test_cli_unknown_profile_exits_2() -> None:
    result = CliRunner().invoke(
        cli, ["validate", str(ERR / "unknown-profile.yaml"), "--profile", "prdo"]
    )
    assert result.exit_code == 2
    assert "unknown-profile: --profile 'prdo' is not defined in this spec" in result.output


# -- plan properties ---------------------------------------------------------------------------


def _assert_topological(plan: Plan) -> None:
    position = {n: i for i, n in enumerate(plan.order)}
    assert set(position) == set(plan.nodes)
    for node_id, node in plan.nodes.items():
        for dep in node.deps:
            assert position[dep] < position[node_id], f"{dep} must come before {node_id}"
        for need in node.spec.needs:
            assert need in node.deps


def test_order_respects_needs_and_references() -> None:
    plan = compile_plan(load_spec(OK / "diamond.yaml"))
    _assert_topological(plan)
    assert plan.nodes["order"].deps == ("intake",)  # needs only
    assert plan.nodes["kb"].deps == ("intake",)  # referenced in a ${{ }} binding only
    assert plan.nodes["reply"].deps == ("order", "kb")  # referenced in the prompt only
    assert plan.order == ("intake", "order", "kb", "reply")


def test_order_breaks_ties_by_declaration_even_against_file_order(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        f"""\
        apiVersion: flowrun/v1
        kind: Workflow
        metadata: {{name: order}}
        tools:
          get_order: {{impl: "{TOOLS}:get_order"}}
          search_kb: {{impl: "{TOOLS}:search_kb"}}
        nodes:
          last:
            tool: search_kb
            args: {{query: "${{{{ nodes.middle.output.status }}}}"}}
          middle:
            tool: get_order
            args: {{order_id: "${{{{ nodes.first.output[0].title }}}}"}}
          first:
            tool: search_kb
            args: {{query: refunds}}
          other:
            tool: search_kb
            args: {{query: shipping}}
        """,
        name="order.yaml",
    )
    _assert_topological(plan)
    assert plan.order == ("first", "middle", "last", "other")
    assert plan.nodes["last"].deps == ("middle",)
    assert plan.nodes["middle"].deps == ("first",)
    assert plan.dependants["first"] == ("middle",)


def test_switch_targets_depend_on_the_switch() -> None:
    plan = compile_plan(load_spec(OK / "switch-join-any.yaml"))
    _assert_topological(plan)
    assert plan.nodes["apologise"].switches == ("route",)
    assert "route" in plan.nodes["thank"].deps
    assert set(plan.nodes["notify"].deps) == {"intake", "apologise", "thank"}
    assert plan.nodes["notify"].join == "any"


def test_map_deps_include_nodes_its_inner_node_references() -> None:
    plan = compile_plan(load_spec(OK / "map-over-input.yaml"))
    assert plan.nodes["summaries"].deps == ()
    assert plan.nodes["total"].deps == ("summaries",)
    assert plan.nodes["summaries"].map is not None
    assert plan.nodes["summaries"].map.as_ == "order"


PROFILED = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: profiled}
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 200, fallbacks: [anthropic/claude-haiku-4-5]}
  strong: {model: anthropic/claude-sonnet-4-5, max_tokens: 500}
profiles:
  ci: {small: openai/gpt-4o-mini, strong: openai/gpt-4o-mini}
  local: {strong: {model: local/gemma-3-270m, max_tokens: 64}}
nodes:
  draft: {llm: strong, prompt: Draft a reply.}
  check: {llm: small, prompt: "Check {{ nodes.draft.output }}."}
"""


def test_profile_swaps_model_ids_and_keeps_alias_parameters(tmp_path: Path) -> None:
    default = _plan(tmp_path, PROFILED)
    assert default.routes["small"].models == ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")
    assert default.routes["strong"].models == ("anthropic/claude-sonnet-4-5",)
    ci = _plan(tmp_path, PROFILED, "ci")
    assert ci.profile == "ci"
    assert ci.routes["strong"].models == ("openai/gpt-4o-mini",)
    assert ci.routes["small"].models == ("openai/gpt-4o-mini",)  # a bare id drops fallbacks
    step = ci.nodes["draft"].llm
    assert step is not None
    assert step.route.models == ("openai/gpt-4o-mini",)
    assert step.max_tokens == 500  # the alias's max_tokens stays
    local = _plan(tmp_path, PROFILED, "local")
    assert local.routes["strong"].models == ("local/gemma-3-270m",)
    assert local.routes["small"].models == default.routes["small"].models  # not routed: unchanged
    assert local.nodes["draft"].llm is not None and local.nodes["draft"].llm.max_tokens == 64


def test_profile_changes_the_worst_case_cost(tmp_path: Path) -> None:
    default, ci, local = (_plan(tmp_path, PROFILED, p) for p in (None, "ci", "local"))
    assert default.cost.usd > ci.cost.usd > 0
    assert local.cost.per_node["draft"] == 0.0  # local models are free
    assert not local.warnings


def test_worst_case_cost_is_positive_for_priced_models() -> None:
    plan = compile_plan(load_spec(OK / "diamond.yaml"))
    assert plan.cost.usd > 0
    assert plan.cost.unpriced_models == ()
    assert set(plan.cost.per_node) == {"intake", "reply"}


def test_worst_case_cost_of_a_map_is_tokens_times_price_times_attempts_times_fan_out(
    tmp_path: Path,
) -> None:
    prompt = "Summarise {{ item }} in one line."
    plan = _plan(
        tmp_path,
        f"""\
        apiVersion: flowrun/v1
        kind: Workflow
        metadata: {{name: fan-out}}
        inputs: {{type: object, properties: {{notes: {{type: array, items: {{type: string}}}}}}}}
        models:
          small: {{model: openai/gpt-4o-mini, max_tokens: 120}}
        nodes:
          each:
            map:
              over: "${{{{ inputs.notes }}}}"
              max_items: 5
              node:
                llm: small
                max_attempts: 2
                retry: {{max_attempts: 3}}
                prompt: "{prompt}"
        """,
    )
    price = price_of("openai/gpt-4o-mini")
    assert price is not None and price.output_per_token > 0
    calls = 2 * 3 * 5  # re-asks × retries × fan-out
    per_call = 120 * price.output_per_token + estimate_tokens(prompt) * price.input_per_token
    assert plan.cost.llm_calls == calls
    assert plan.cost.output_tokens == 120 * calls
    assert plan.cost.usd == pytest.approx(per_call * calls)
    assert plan.cost.per_node == {"each": pytest.approx(per_call * calls)}


def test_unpriced_model_warns_and_counts_zero() -> None:
    plan = compile_plan(load_spec(ERR / "no-price.yaml"))
    assert plan.cost.usd == 0
    assert plan.cost.unpriced_models == ("openai/gpt-7-imaginary",)
    (w,) = plan.warnings
    assert w.render().startswith(f"{ERR / 'no-price.yaml'}:6:10: warning: no-price: ")


# -- scale -------------------------------------------------------------------------------------


def big_spec(n: int) -> str:
    """A realistic wide-and-deep spec: tool and LLM nodes, each reading one or two earlier nodes."""
    out = [
        "apiVersion: flowrun/v1",
        "kind: Workflow",
        "metadata: {name: big}",
        "inputs: {type: object, properties: {order_id: {type: string}}}",
        "models:",
        "  small: {model: openai/gpt-4o-mini, max_tokens: 50}",
        "tools:",
        f'  get_order: {{impl: "{TOOLS}:get_order"}}',
        "nodes:",
        "  n0:",
        "    tool: get_order",
        '    args: {order_id: "${{ inputs.order_id }}"}',
    ]
    for i in range(1, n):
        a, b = (i - 1) // 2 * 2, max(i - 7, 0) // 2 * 2  # even nodes are tools, odd are LLMs
        if i % 2 == 0:
            out += [
                f"  n{i}:",
                "    tool: get_order",
                f'    args: {{order_id: "${{{{ nodes.n{a}.output.order_id }}}}"}}',
            ]
        else:
            out += [
                f"  n{i}:",
                "    llm: small",
                f"    when: nodes.n{a}.output.status == 'lost'"
                f" || nodes.n{b}.output.amount_usd > 10.0",
                f'    prompt: "Order {{{{ nodes.n{a}.output.order_id }}}}'
                f' is {{{{ nodes.n{b}.output.status }}}}."',
                "    output:",
                "      {type: object, properties: {reply: {type: string}}, required: [reply]}",
            ]
    return "\n".join(out) + "\n"


def test_validate_a_5000_node_spec(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "tools_fixture.py", tmp_path)
    spec = tmp_path / "big.yaml"
    spec.write_text(big_spec(5000), encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "nodes    5000 (2500 llm, 2500 tool), 7498 edges" in result.output
