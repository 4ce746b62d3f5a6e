"""Stage 1 of the pipeline: YAML file → typed Spec with source positions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from runner.spec.loader import Source, load_file, load_text
from runner.spec.models import Spec
from runner.spec.parse import parse_spec


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    source: Source

    @property
    def path(self) -> str:
        return self.source.path

    @cached_property  # perf (issue 11): read on every tool call; resolve() stats each component
    def directory(self) -> Path:
        return Path(self.source.path).resolve().parent


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, parse and type-check a spec file, raising SpecError with every problem found."""
    src = load_file(path)
    return LoadedSpec(parse_spec(src), src)


def load_spec_text(text: str, path: str = "<string>") -> LoadedSpec:
    src = load_text(text, path)
    return LoadedSpec(parse_spec(src), src)


__all__ = ["LoadedSpec", "Source", "Spec", "load_spec", "load_spec_text"]
