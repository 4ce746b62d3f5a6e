"""The compiler's graph (runner/plan/digraph.py): orders, cycles and components it reports."""

from __future__ import annotations

import pytest

from runner.plan.digraph import (
    CycleError,
    DiGraph,
    find_cycle,
    is_dag,
    strongly_connected_components,
    topological_sort,
)


def graph(nodes: str, edges: str) -> DiGraph[str]:
    g: DiGraph[str] = DiGraph()
    g.add_nodes_from(nodes.split())
    g.add_edges_from(tuple(e.split(">")) for e in edges.split())  # type: ignore[misc]
    return g


def test_nodes_edges_and_neighbours_keep_insertion_order() -> None:
    g = graph("a b c d", "a>c a>b b>d c>d a>c")
    assert list(g.nodes) == ["a", "b", "c", "d"] and len(g) == 4 and "d" in g
    assert g.edges == [("a", "c"), ("a", "b"), ("b", "d"), ("c", "d")]
    assert g.number_of_edges() == 4
    assert list(g.successors("a")) == ["c", "b"]
    assert list(g.predecessors("d")) == ["b", "c"] and g.in_degree("d") == 2
    assert g.has_edge("a", "b") and not g.has_edge("b", "a") and not g.has_edge("x", "a")


def test_topological_order_breaks_ties_by_key() -> None:
    g = graph("a b c d e", "a>d b>d d>e c>e")
    rank = {n: i for i, n in enumerate("cbade")}
    assert list(topological_sort(g, key=rank.__getitem__)) == ["c", "b", "a", "d", "e"]
    assert list(topological_sort(g)) == ["a", "b", "c", "d", "e"]
    # a node becomes ready only after all it needs, whatever its key
    order = list(topological_sort(graph("x y z", "z>x"), key=lambda n: n))
    assert order == ["y", "z", "x"]


def test_a_cycle_has_no_order() -> None:
    g = graph("a b c", "a>b b>c c>b")
    assert not is_dag(g)
    with pytest.raises(CycleError):
        list(topological_sort(g))
    assert is_dag(graph("a b", "a>b"))


def test_find_cycle_returns_the_cycle_from_where_it_closes() -> None:
    assert find_cycle(graph("a b c d", "a>b b>c c>d d>b")) == ["b", "c", "d"]
    assert find_cycle(graph("a", "a>a")) == ["a"]
    assert find_cycle(graph("a b c", "a>b a>c b>c")) == []
    # a node fully explored from an earlier start is not walked again
    assert find_cycle(graph("a b c d", "a>b c>b c>d d>c")) == ["c", "d"]


def test_strongly_connected_components() -> None:
    g = graph("a b c d e f", "a>b b>c c>a c>d d>e e>d f>f")
    comps = sorted(sorted(c) for c in strongly_connected_components(g))
    assert comps == [["a", "b", "c"], ["d", "e"], ["f"]]


def test_long_chains_need_no_recursion() -> None:
    n = 20_000
    g: DiGraph[int] = DiGraph()
    g.add_edges_from((i, i + 1) for i in range(n))
    assert list(topological_sort(g, key=lambda i: -i)) == list(range(n + 1))
    assert find_cycle(g) == []
    assert sum(1 for _ in strongly_connected_components(g)) == n + 1
    g.add_edge(n, 0)
    assert len(find_cycle(g)) == n + 1
    assert [len(c) for c in strongly_connected_components(g)] == [n + 1]
