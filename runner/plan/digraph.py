"""The directed graph of a plan's nodes, and the few algorithms the compiler runs on it.

What the compiler needs of a graph is small: nodes and edges in insertion order, successors,
predecessors, a topological order (ties broken by a key), a cycle, strongly connected
components. networkx did this before, and importing it cost ~110 ms on every `flowrun` start
that compiles a spec (issue 26); these few functions are plain Python on dicts, and as fast
as networkx's on the 2,000-node benchmark spec.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Iterator, KeysView
from typing import Any, Generic, TypeVar

N = TypeVar("N", bound=Hashable)


class DiGraph(Generic[N]):
    """A simple directed graph: nodes and edges kept in insertion order, no edge data."""

    __slots__ = ("_pred", "_succ")

    def __init__(self) -> None:
        self._succ: dict[N, dict[N, None]] = {}
        self._pred: dict[N, dict[N, None]] = {}

    def add_node(self, node: N) -> None:
        if node not in self._succ:
            self._succ[node] = {}
            self._pred[node] = {}

    def add_nodes_from(self, nodes: Iterable[N]) -> None:
        for n in nodes:
            self.add_node(n)

    def add_edge(self, src: N, dst: N) -> None:
        self.add_node(src)
        self.add_node(dst)
        self._succ[src][dst] = None
        self._pred[dst][src] = None

    def add_edges_from(self, edges: Iterable[tuple[N, N]]) -> None:
        for src, dst in edges:
            self.add_edge(src, dst)

    @property
    def nodes(self) -> KeysView[N]:
        return self._succ.keys()

    @property
    def edges(self) -> list[tuple[N, N]]:
        return [(u, v) for u, succ in self._succ.items() for v in succ]

    def number_of_edges(self) -> int:
        return sum(map(len, self._succ.values()))

    def has_edge(self, src: N, dst: N) -> bool:
        return dst in self._succ.get(src, ())

    def successors(self, node: N) -> Iterator[N]:
        return iter(self._succ[node])

    def predecessors(self, node: N) -> Iterator[N]:
        return iter(self._pred[node])

    def in_degree(self, node: N) -> int:
        return len(self._pred[node])

    def __contains__(self, node: object) -> bool:
        return node in self._succ

    def __iter__(self) -> Iterator[N]:
        return iter(self._succ)

    def __len__(self) -> int:
        return len(self._succ)

    def __repr__(self) -> str:
        return f"DiGraph({len(self)} nodes, {self.number_of_edges()} edges)"


class CycleError(ValueError):
    """The graph has a cycle, so it has no topological order."""


def topological_sort(graph: DiGraph[N], key: Callable[[N], Any] | None = None) -> Iterator[N]:
    """Kahn's algorithm. With `key`, of all ready nodes the one with the smallest key comes
    first (networkx's lexicographical_topological_sort); without, ready nodes come in insertion
    order. Raises CycleError when the graph is not a DAG."""
    indeg = {n: len(p) for n, p in graph._pred.items()}
    done = 0
    if key is None:
        ready = [n for n, d in indeg.items() if d == 0]
        i = 0
        while i < len(ready):
            n = ready[i]
            i += 1
            done += 1
            yield n
            for s in graph._succ[n]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
    else:
        # the counter keeps the heap from comparing nodes when two keys are equal
        heap = [(key(n), i, n) for i, n in enumerate(n for n, d in indeg.items() if d == 0)]
        heapq.heapify(heap)
        count = len(heap)
        while heap:
            _, _, n = heapq.heappop(heap)
            done += 1
            yield n
            for s in graph._succ[n]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    heapq.heappush(heap, (key(s), count, s))
                    count += 1
    if done != len(indeg):
        raise CycleError("the graph has a cycle")


def is_dag(graph: DiGraph[N]) -> bool:
    try:
        for _ in topological_sort(graph):
            pass
    except CycleError:
        return False
    return True


def find_cycle(graph: DiGraph[N]) -> list[N]:
    """The nodes of the first cycle a depth-first search meets (starting nodes and successors
    in insertion order), from the node the cycle closes on; [] for a DAG."""
    explored: set[N] = set()
    for start in graph._succ:
        if start in explored:
            continue
        path = [start]
        on_path = {start}
        stack = [iter(graph._succ[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done = path.pop()
                on_path.discard(done)
                explored.add(done)
                continue
            if nxt in on_path:
                return path[path.index(nxt) :]
            if nxt in explored:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(graph._succ[nxt]))
    return []


def strongly_connected_components(graph: DiGraph[N]) -> Iterator[set[N]]:
    """Tarjan's algorithm, iterative (no recursion limit on long chains)."""
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    stack: list[N] = []
    on_stack: set[N] = set()
    counter = 0
    for root in graph._succ:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph._succ[root]))]
        while work:
            node, succ = work[-1]
            nxt = next(succ, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph._succ[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp: set[N] = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == node:
                        break
                yield comp
