"""Spec → Plan: the compiler's public entry points (from the files on disk, or a run's bundle).

The compiler itself is split by concern: runner/plan/compiler.py (state, reporting,
expressions), kinds/ (one module per node kind), rules/ (one module per rule),
refs.py (reference checks), policies.py, assemble.py (the whole plan).
"""

from __future__ import annotations

from dataclasses import replace

from runner.plan.bundle import Bundle, BundleSources, DiskSources
from runner.plan.compiler import Compiler
from runner.plan.model import Plan
from runner.plan.names import NODE_ROOTS, did_you_mean, expr_refs
from runner.redact import extend
from runner.spec import LoadedSpec

__all__ = [
    "NODE_ROOTS",
    "Compiler",
    "compile_bundle",
    "compile_plan",
    "did_you_mean",
    "expr_refs",
]


def compile_plan(loaded: LoadedSpec, profile: str | None = None) -> Plan:
    """Compile a loaded spec for one profile; raises SpecError listing every problem.

    The files it names are read from disk; the plan carries them as its bundle."""
    sources = DiskSources.for_spec(loaded.source.path, loaded.source.text)
    plan = Compiler(loaded, profile, sources=sources).compile()
    spec_detectors(loaded)
    return replace(plan, bundle=sources.bundle())


def spec_detectors(loaded: LoadedSpec) -> None:
    """A compiled spec's `redact:` detectors apply from now on in this process (whatever runs
    it, shows it, or stores it), so a run's values are sealed and shown redacted alike."""
    r = loaded.spec.redact
    if r.patterns or r.fields:
        extend(r.patterns, r.fields)


def compile_bundle(bundle: Bundle, path: str, profile: str | None = None) -> Plan:
    """Compile a run's own bundle, never the files on disk; `path` names the entry spec."""
    from runner.spec import load_spec_text

    loaded = load_spec_text(bundle.entry_text, path)
    plan = Compiler(loaded, profile, sources=BundleSources(bundle)).compile()
    spec_detectors(loaded)
    return replace(plan, bundle=bundle)
