"""What every node kind's compiler gets: the site of the node (id, path, scope, deps)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.plan.model import Route
from runner.spec.loader import PathKey

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


@dataclass(frozen=True)
class Site:
    """Where a node is compiled: its id and YAML path, the names in scope (`roots`, with the
    schemas of local names such as a map's item), and the set its dependencies are added to."""

    node_id: str
    path: PathKey
    routes: Mapping[str, Route]
    roots: frozenset[str]
    locals_schema: Mapping[str, Any] | None
    deps: set[str]

    def at(self, *keys: str | int) -> PathKey:
        return (*self.path, *keys)

    def refs(self, c: Compiler, refs: Any, path: PathKey, **kw: Any) -> None:
        """Check references made at `path` inside this node, in its scope."""
        c.check_refs(
            refs,
            path,
            self.roots,
            node_id=self.node_id,
            deps=self.deps,
            locals_schema=self.locals_schema,
            **kw,
        )


# A kind's compiler: the PlanNode fields it fills (its step, output_schema, and any default
# it overrides such as retry), or None after reporting why the node does not compile.
CompileFn = Callable[["Compiler", Site, Any], "dict[str, Any] | None"]
# A kind's output type, as other nodes' references see it (before the node is compiled).
OutputFn = Callable[["Compiler", Any], Any]


@dataclass(frozen=True)
class Kind:
    """One node kind: its YAML key (also the PlanNode field of its step) and its two parts."""

    name: str
    spec_type: type
    compile: CompileFn
    output_schema: OutputFn
