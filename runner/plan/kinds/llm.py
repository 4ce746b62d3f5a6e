"""`llm:` nodes: a prompt (inline or `prompt_file`) sent through a model alias's route."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.expr.templates import PromptTemplate, template_refs
from runner.plan.bundle import OutsideProject, file_key
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import DEFAULT_MAX_TOKENS, LLMStep
from runner.plan.names import did_you_mean
from runner.spec.models import LLMNode, ResponseCache

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def compile_llm(c: Compiler, site: Site, node: LLMNode) -> dict[str, Any] | None:
    ok = True
    route = site.routes.get(node.llm)
    if route is None:
        c.error(
            site.at("llm"),
            "unknown-model",
            f"model alias {node.llm!r} is not defined",
            hint=did_you_mean(node.llm, site.routes) or "define it under `models`",
        )
        ok = False
    if node.output is not None and not c.check_schema(
        node.output, site.at("output"), llm_output=True
    ):
        ok = False
    prompt: PromptTemplate | None = None
    if node.prompt is not None and node.prompt_file is not None:
        c.error(
            site.at("prompt_file"),
            "invalid-value",
            "give either `prompt` or `prompt_file`, not both",
            key=True,
        )
        ok = False
    elif node.prompt is not None:
        prompt = c.template(node.prompt, site.at("prompt"))
        if prompt is not None:
            site.refs(c, template_refs(node.prompt), site.at("prompt"), template=node.prompt)
    elif node.prompt_file is not None:
        prompt = _prompt_file(c, site, node.prompt_file)
        ok = ok and prompt is not None
    else:
        c.error(
            site.path,
            "missing-key",
            f"LLM node {site.node_id!r} needs a `prompt` or `prompt_file`",
        )
        ok = False
    system = None
    if node.system is not None:
        system = c.template(node.system, site.at("system"))
        if system is not None:
            site.refs(c, template_refs(node.system), site.at("system"), template=node.system)
    if not ok or prompt is None or route is None or (node.system is not None and system is None):
        return None
    step = LLMStep(
        alias=node.llm,
        route=route,
        prompt=prompt,
        system=system,
        output_schema=node.output,
        max_tokens=node.max_tokens or route.config.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=node.temperature if node.temperature is not None else route.config.temperature,
        max_attempts=node.max_attempts,
        cache=(ResponseCache() if node.cache is True else node.cache or None),
    )
    return {"llm": step, "output_schema": node.output}


def _prompt_file(c: Compiler, site: Site, name: str) -> PromptTemplate | None:
    """A prompt read through the compiler's sources; its diagnostics point into its own file."""
    try:
        text = c.files.read(file_key(c.base, name))
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        c.error(
            site.at("prompt_file"),
            "file-outside-project" if isinstance(e, OutsideProject) else "file-not-found",
            f"cannot read prompt file {name!r}: {reason}",
        )
        return None
    shown = str(Path(c.src.path).parent / name)
    prompt = c.template(text, site.at("prompt_file"), file=shown)
    if prompt is not None:
        site.refs(c, template_refs(text), site.at("prompt_file"), template=text, file=shown)
    return prompt


KIND = Kind(
    name="llm",
    spec_type=LLMNode,
    compile=compile_llm,
    output_schema=lambda c, node: node.output if node.output is not None else {"type": "string"},
)
