"""`flowrun policy test`: policy unit cases (a request, then the expected decision and rule)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import Diagnostic, ExitCode, SpecError, UsageError


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Request(_M):
    tool: str
    effect: Literal["read", "write"] | None = None  # default: the tool contract's effect
    args: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = None
    tenant: str | None = None
    workflow: str | None = None  # default: the spec's name
    node: str = ""
    scopes: list[str] = Field(default_factory=list)
    classification: str | None = None
    destination: str | None = None
    now: str = "2026-01-01T00:00:00+00:00"
    tainted: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)


class Expect(_M):
    effect: Literal["allow", "deny", "require_approval"]
    rule: str | None = None


class Case(_M):
    name: str
    request: Request
    expect: Expect


def _load_cases(path: str) -> list[tuple[Case, int]]:
    from runner.spec.loader import Document, load_file

    src = load_file(path, mapping=False, what=Document("policy case file", "cases"))
    data = src.data if isinstance(src.data, list) else src.data.get("cases")
    if not isinstance(data, list):
        raise UsageError(f"{path}: a policy case file is a list of cases (or `cases:` with one)")
    prefix: tuple[str | int, ...] = () if isinstance(src.data, list) else ("cases",)
    out: list[tuple[Case, int]] = []
    diags: list[Diagnostic] = []
    for i, raw in enumerate(data):
        try:
            out.append((Case.model_validate(raw), src.pos((*prefix, i)).line))
        except ValidationError as e:
            for err in e.errors():
                loc = tuple(err["loc"])
                diags.append(
                    src.diag(
                        (*prefix, i, *loc),
                        "policy-case",
                        f"{'.'.join(map(str, loc))}: {err['msg']}",
                    )
                )
    if diags:
        raise SpecError(diags)
    return out


def run_cases(plan: Any, cases_path: str, spec: str) -> list[dict[str, Any]]:
    """Each case's decision by the plan's policies: `name`, `ok`, `line`, `got`, `expect`."""
    from runner.policy import request

    cases = _load_cases(cases_path)
    tools = plan.loaded.spec.tools
    results: list[dict[str, Any]] = []
    for case, line in cases:
        r = case.request
        if r.tool not in tools:
            raise UsageError(
                f"{cases_path}:{line}: case {case.name!r}: tool {r.tool!r} is not defined in {spec}"
            )
        contract = tools[r.tool]
        req = request(
            tool=r.tool,
            effect=r.effect or contract.effect,
            args=r.args,
            actor=r.actor,
            tenant=r.tenant,
            workflow=r.workflow or plan.name,
            node=r.node,
            scopes=r.scopes,
            classification=r.classification or contract.classification,
            destination=r.destination,
            now=r.now,
            tainted=r.tainted,
            inputs=r.inputs,
        )
        got = plan.policy.decide(req, required_scopes=contract.scopes)
        ok = got.effect == case.expect.effect and (
            case.expect.rule is None or got.rule == case.expect.rule
        )
        results.append(
            {
                "name": case.name,
                "ok": ok,
                "line": line,
                "got": got.to_json(),
                "expect": case.expect.model_dump(),
            }
        )
    return results


@click.group()
def policy() -> None:
    """Work with a spec's policies."""


@policy.command("test")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--cases", "cases_path", required=True, metavar="FILE", help="YAML list of cases")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def policy_test(spec: str, cases_path: str, fmt: str) -> None:
    """Run policy unit cases, as `opa test` does: exit 0 all pass, 1 a case fails, 2 bad input."""
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    plan = compile_plan(load_spec(spec))
    results = run_cases(plan, cases_path, spec)
    failed = [res for res in results if not res["ok"]]
    if fmt == "json":
        click.echo(
            json.dumps(
                {"passed": len(results) - len(failed), "failed": len(failed), "cases": results},
                indent=2,
            )
        )
    else:
        for res in results:
            if res["ok"]:
                click.echo(f"PASS {res['name']}")
            else:
                want = res["expect"]["effect"] + (
                    f" by {res['expect']['rule']}" if res["expect"]["rule"] else ""
                )
                got = res["got"]
                click.echo(
                    f"FAIL {res['name']} ({Path(cases_path).name}:{res['line']}): expected {want}, "
                    f"got {got['effect']} by {got['rule']} ({got['reason']})"
                )
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(ExitCode.FAILED if failed else ExitCode.SUCCEEDED)


POLICY_COMMANDS = (policy,)
