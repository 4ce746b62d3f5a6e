"""Eval case files (YAML) → typed cases, checked against the plan so a bad case never runs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import Diagnostic, SpecError, UsageError
from runner.expr.cel import CelSyntaxError, CompiledExpr, compile_cel
from runner.expr.refs import cel_refs
from runner.plan import schemas
from runner.plan.model import Plan
from runner.spec.loader import Document, PathKey, Source, load_file
from runner.spec.models import Duration

CaseKind = Literal["gold", "synthetic", "adversarial"]
Outcome = Literal[
    "succeeded", "failed", "escalated", "budget_exceeded", "denied", "waiting", "killed"
]
ErrorKind = Literal[
    "rate_limit", "internal_server_error", "context_window", "timeout", "bad_request", "auth"
]
ImplRef = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
ASSERT_ROOTS = ("inputs", "outputs", "nodes", "run", "tools", "calls")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Usage(_M):
    prompt_tokens: Annotated[int, Field(ge=0)]
    completion_tokens: Annotated[int, Field(ge=0)]


class Response(_M):
    """One recorded model answer, in the same shape as a line of a responses JSONL file."""

    node: Annotated[str, Field(min_length=1)]
    index: Annotated[int, Field(ge=0)] | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    content: Any = None
    usage: Usage | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: ErrorKind | None = None
    latency_s: Annotated[float, Field(ge=0)] | None = None


class Fault(_M):
    """Failures injected into one tool (every node calling it) or one node, to measure recovery."""

    tool: str | None = None
    node: str | None = None
    error: Annotated[int, Field(ge=0, le=100)] = Field(0, description="raise N times")
    timeout: Annotated[int, Field(ge=0, le=100)] = Field(0, description="hang past timeout N×")
    malformed: Annotated[int, Field(ge=0, le=100)] = Field(0, description="bad result N times")
    invalid_json: Annotated[int, Field(ge=0, le=100)] = Field(0, description="model: not JSON")
    provider_error: Annotated[int, Field(ge=0, le=100)] = Field(0, description="model: 429")
    node_timeout: Duration | None = Field(None, description="shorter node timeout for this case")


class Expect(_M):
    status: Outcome
    assert_: list[str] = Field(default_factory=list, alias="assert")
    must_call: list[str] = Field(default_factory=list)
    must_not_call: list[str] = Field(default_factory=list)
    must_be_denied: list[str] = Field(default_factory=list)
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None
    max_latency_s: Annotated[float, Field(gt=0)] | None = None
    max_tool_calls: Annotated[int, Field(ge=0)] | None = None
    max_llm_calls: Annotated[int, Field(ge=0)] | None = None


class CaseModel(_M):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    kind: CaseKind
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    input: dict[str, Any]
    responses: list[Response] | str | None = Field(
        None, description="recorded answers inline, or a JSONL path next to the case file"
    )
    approvals: dict[str, Literal["approve", "reject"]] = Field(default_factory=dict)
    actor: str | None = Field(None, description="the run's actor (policy principal)")
    tenant: str | None = None
    scopes: list[str] | None = Field(None, description="scopes the run holds (else the file's)")
    writes: bool = True
    faults: list[Fault] = Field(default_factory=list)
    expect: Expect


class Fixture(_M):
    """A fresh resource per run: `seed(path)` is called and `env` points at the file."""

    env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
    seed: ImplRef


class Identity(_M):
    """Who every case of a file runs as, unless a case says otherwise."""

    actor: str | None = None
    tenant: str | None = None
    scopes: list[str] = Field(default_factory=list)


class FileModel(_M):
    fixture: Fixture | None = None
    identity: Identity | None = None
    cases: list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """A checked case, with where it came from and its assertions compiled."""

    model: CaseModel
    file: str
    line: int
    fixture: Fixture | None
    asserts: tuple[CompiledExpr, ...] = field(default=())
    responses_path: Path | None = None

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def expect(self) -> Expect:
        return self.model.expect


def case_files(path: str | Path) -> list[Path]:
    """The YAML files a --cases PATH names: the file itself, or every *.yaml/*.yml under a dir."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
        if not files:
            raise UsageError(f"--cases: no .yaml or .yml files under {str(path)!r}")
        return files
    if not p.is_file():
        raise UsageError(f"--cases: no such file or directory {str(path)!r}")
    return [p]


CASE_FILE = Document("case file", "cases, ...")


def load_cases(path: str | Path, plan: Plan) -> list[Case]:
    """Read every case file under path and check each against the plan; all problems at once."""
    out: list[Case] = []
    diags: list[Diagnostic] = []
    seen: dict[str, str] = {}
    for f in case_files(path):
        try:
            src = load_file(f, mapping=False, what=CASE_FILE)
        except SpecError as e:
            diags.extend(e.diagnostics)
            continue
        for case in _cases_in(src, plan, diags):
            where = f"{case.file}:{case.line}"
            if case.id in seen:
                diags.append(
                    Diagnostic(
                        file=case.file,
                        line=case.line,
                        col=1,
                        rule="eval-duplicate-case",
                        message=f"case id {case.id!r} is also used at {seen[case.id]}",
                    )
                )
                continue
            seen[case.id] = where
            out.append(case)
    if diags:
        raise SpecError(diags)
    if not out:
        raise UsageError(f"--cases: {str(path)!r} holds no cases")
    return out


def _cases_in(src: Source, plan: Plan, diags: list[Diagnostic]) -> list[Case]:
    data = src.data
    fixture: Fixture | None = None
    identity: Identity | None = None
    prefix: PathKey = ()
    if isinstance(data, dict) and "cases" in data:
        try:
            fm = FileModel.model_validate(data)
        except ValidationError as e:
            diags.extend(_pydantic(src, (), e))
            return []
        fixture, items, prefix = fm.fixture, fm.cases, ("cases",)
        identity = fm.identity
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    out: list[Case] = []
    for i, raw in enumerate(items):
        at: PathKey = (*prefix, i) if (prefix or isinstance(data, list)) else ()
        if not isinstance(raw, dict):
            diags.append(src.diag(at, "eval-case", "a case must be a mapping (id, kind, input...)"))
            continue
        try:
            model = CaseModel.model_validate(raw)
        except ValidationError as e:
            diags.extend(_pydantic(src, at, e))
            continue
        if identity is not None:
            model = model.model_copy(
                update={
                    "actor": model.actor if model.actor is not None else identity.actor,
                    "tenant": model.tenant if model.tenant is not None else identity.tenant,
                    "scopes": model.scopes if model.scopes is not None else identity.scopes,
                }
            )
        n = len(diags)
        case = _check(src, at, model, fixture, plan, diags)
        if len(diags) == n:
            out.append(case)
    return out


def _pydantic(src: Source, at: PathKey, exc: ValidationError) -> list[Diagnostic]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("literal")))
        path = (*at, *loc)
        msg = err["msg"]
        hint = None
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            owner = _owner(loc)
            near = difflib.get_close_matches(key, owner, n=1)
            msg = f"unknown key {key!r}" + (f"; did you mean {near[0]!r}?" if near else "")
            hint = f"allowed keys: {', '.join(owner)}" if owner else None
            out.append(src.diag(path, "eval-case", msg, hint=hint, key=True))
            continue
        if err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
            path = path[:-1]
        out.append(src.diag(path, "eval-case", f"{_dotted(loc)}: {msg}", hint=hint))
    return out


def _owner(loc: tuple[Any, ...]) -> list[str]:
    models: dict[str, type[BaseModel]] = {
        "expect": Expect,
        "faults": Fault,
        "responses": Response,
        "fixture": Fixture,
        "usage": Usage,
    }
    owner: type[BaseModel] = CaseModel if loc[:1] != ("fixture",) else FileModel
    for part in loc[:-1]:
        if isinstance(part, str) and part in models:
            owner = models[part]
    return sorted(f.alias or n for n, f in owner.model_fields.items())


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "case"


def _check(
    src: Source,
    at: PathKey,
    m: CaseModel,
    fixture: Fixture | None,
    plan: Plan,
    diags: list[Diagnostic],
) -> Case:
    """Check a case against the spec: inputs, node and tool names, assertions."""

    def bad(path: PathKey, rule: str, msg: str, hint: str | None = None, key: bool = False) -> None:
        diags.append(src.diag((*at, *path), rule, f"case {m.id!r}: {msg}", hint=hint, key=key))

    problems = schemas.validation_errors(plan.inputs_schema, m.input)
    if problems:
        bad(
            ("input",),
            "eval-input",
            "input does not match the spec's inputs schema: " + "; ".join(problems),
            hint=f"see `inputs` in {plan.loaded.path}",
        )
    nodes = plan.nodes
    llm_nodes = sorted(
        n.id for n in nodes.values() if n.llm is not None or (n.map and n.map.inner.llm)
    )
    tool_names = sorted(plan.loaded.spec.tools)
    approval_nodes = sorted(n.id for n in nodes.values() if n.approval is not None)

    def unknown(what: str, name: str, choices: list[str]) -> tuple[str, str]:
        near = difflib.get_close_matches(name, choices, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"{what}s: {', '.join(choices) or '-'}"
        return f"unknown {what} {name!r} in {plan.loaded.path}", hint

    responses_path: Path | None = None
    if isinstance(m.responses, list):
        for i, r in enumerate(m.responses):
            if r.node not in llm_nodes:
                bad(
                    ("responses", i, "node"),
                    "eval-unknown-node",
                    *unknown("LLM node", r.node, llm_nodes),
                )
            if r.error is not None and r.content is not None:
                bad(("responses", i), "eval-case", "a response has both 'error' and 'content'")
            if r.error is None and r.content is None:
                bad(("responses", i), "eval-case", "a response needs 'content' or 'error'")
    elif isinstance(m.responses, str):
        responses_path = (Path(src.path).parent / m.responses).resolve()
        if not responses_path.is_file():
            bad(("responses",), "eval-case", f"responses file {m.responses!r} not found")
    for name in m.approvals:
        if name not in approval_nodes:
            bad(
                ("approvals", name),
                "eval-unknown-node",
                *unknown("approval node", name, approval_nodes),
                key=True,
            )
    for i, f in enumerate(m.faults):
        if (f.tool is None) == (f.node is None):
            bad(("faults", i), "eval-fault", "a fault names exactly one of 'tool' or 'node'")
            continue
        model_fault = f.invalid_json or f.provider_error
        tool_fault = f.error or f.timeout or f.malformed
        if not (model_fault or tool_fault):
            bad(("faults", i), "eval-fault", "a fault injects nothing (error, timeout, ...: 0)")
        if f.tool is not None:
            if f.tool not in tool_names:
                bad(
                    ("faults", i, "tool"), "eval-unknown-tool", *unknown("tool", f.tool, tool_names)
                )
            elif model_fault:
                bad(("faults", i), "eval-fault", "invalid_json/provider_error need an LLM 'node'")
        elif f.node is not None:
            if f.node not in nodes:
                bad(
                    ("faults", i, "node"),
                    "eval-unknown-node",
                    *unknown("node", f.node, list(nodes)),
                )
            elif model_fault and f.node not in llm_nodes:
                bad(("faults", i, "node"), "eval-fault", f"node {f.node!r} is not an LLM node")
            elif tool_fault and _tool_of(plan, f.node) is None:
                bad(("faults", i, "node"), "eval-fault", f"node {f.node!r} calls no tool")
    e = m.expect
    for key in ("must_call", "must_not_call", "must_be_denied"):
        for i, t in enumerate(getattr(e, key)):
            if t not in tool_names:
                bad(("expect", key, i), "eval-unknown-tool", *unknown("tool", t, tool_names))
    compiled: list[CompiledExpr] = []
    for i, text in enumerate(e.assert_):
        path = ("expect", "assert", i)
        try:
            compiled.append(compile_cel(text))
        except CelSyntaxError as err:
            diags.append(
                src.diag(
                    (*at, *path), "eval-assert", f"case {m.id!r}: {err.message}", offset=err.offset
                )
            )
            continue
        for ref in cel_refs(text):
            if ref.root not in ASSERT_ROOTS:
                near = difflib.get_close_matches(ref.root, ASSERT_ROOTS, n=1)
                diags.append(
                    src.diag(
                        (*at, *path),
                        "eval-assert",
                        f"case {m.id!r}: unknown name {ref.root!r} in an assertion",
                        hint=f"did you mean {near[0]!r}?"
                        if near
                        else f"names: {', '.join(ASSERT_ROOTS)}",
                        offset=ref.offset,
                    )
                )
            elif ref.root == "nodes" and ref.path and isinstance(ref.path[0], str):
                if ref.path[0] not in nodes:
                    msg, hint = unknown("node", ref.path[0], list(nodes))
                    diags.append(
                        src.diag(
                            (*at, *path),
                            "eval-unknown-node",
                            f"case {m.id!r}: {msg}",
                            hint=hint,
                            offset=ref.offset,
                        )
                    )
            elif (
                ref.root == "outputs"
                and ref.path
                and isinstance(ref.path[0], str)
                and ref.path[0] not in plan.outputs
            ):
                msg, hint = unknown("output", ref.path[0], list(plan.outputs))
                diags.append(
                    src.diag(
                        (*at, *path),
                        "eval-unknown-output",
                        f"case {m.id!r}: {msg}",
                        hint=hint,
                        offset=ref.offset,
                    )
                )
    line = src.pos(at).line if at else 1
    return Case(m, src.path, line, fixture, tuple(compiled), responses_path)


def _tool_of(plan: Plan, node_id: str) -> str | None:
    node = plan.nodes[node_id]
    if node.tool is not None:
        return node.tool.name
    if node.map is not None and node.map.inner.tool is not None:
        return node.map.inner.tool.name
    return None
