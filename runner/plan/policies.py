"""A spec's policies: CEL rules over the call request and Cedar files, checked before any call.

Rules: cel-syntax and unknown-name in a rule's `when`, file-not-found and cedar-syntax for a
policy file (read through the compiler's sources, so a run's bundle carries it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import SpecError, errors_only
from runner.plan.bundle import OutsideProject, file_key
from runner.plan.names import expr_refs
from runner.plan.rules import plan_rules
from runner.policy import REQUEST_FIELDS, CedarPolicies, PolicySet, Rule
from runner.spec.loader import PathKey

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def compile_policies(c: Compiler) -> PolicySet:
    rules: list[Rule] = []
    for i, p in enumerate(c.spec.policies):
        path: PathKey = ("policies", i, "when")
        when = c.cel(p.when, path)
        if when is None:
            continue
        c.check_refs(expr_refs(p.when, when), path, REQUEST_FIELDS, node_id=None, deps=None)
        rules.append(Rule(id=p.id, when=when, effect=p.effect, reason=p.reason))
    cedar = _cedar(c)
    c.diags.extend(plan_rules(c))
    errors = errors_only(c.diags)
    if errors:
        raise SpecError(errors)
    return PolicySet(rules=tuple(rules), default=c.spec.policy_default, cedar=cedar)


def _cedar(c: Compiler) -> CedarPolicies | None:
    texts = []
    for i, name in enumerate(c.spec.policy_files):
        try:
            text = c.files.read(file_key(c.base, name))
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not UTF-8"
            rule = "file-outside-project" if isinstance(e, OutsideProject) else "file-not-found"
            c.error(("policy_files", i), rule, f"cannot read policy file {name!r}: {why}")
            continue
        try:
            CedarPolicies.parse(text)
        except ValueError as e:
            c.error(("policy_files", i), "cedar-syntax", f"{name}: {e}")
            continue
        texts.append(text)
    return CedarPolicies.parse("\n".join(texts)) if texts else None
