"""The typed node record: stored rows (old ones with a free `detail` object too) load and
round-trip, and every node kind a spec can declare has a runner registered."""

from __future__ import annotations

import dataclasses

from runner.engine.results import NodeDetail, NodeResult
from runner.nodes import RUNNERS
from runner.spec.models import _KIND_CLASSES


def test_every_spec_node_kind_has_a_registered_runner() -> None:
    assert set(_KIND_CLASSES) == set(RUNNERS)


def test_an_old_stored_row_loads_with_typed_fields_and_keeps_unknown_keys() -> None:
    row = {
        "node_id": "pay",
        "kind": "tool",
        "status": "denied",
        "detail": {
            "idempotency_key": "r1:pay",
            "policy": [{"tool": "pay", "effect": "deny", "rule": "cap"}],
            "on_deny": "skip",
            "written_by_another_version": {"x": 1},
        },
    }
    res = NodeResult.from_json(row)
    assert res.detail.on_deny == "skip"
    assert res.detail.policy[0]["rule"] == "cap"
    assert res.detail.extra == {"written_by_another_version": {"x": 1}}
    assert res.detail.get("on_deny") == "skip" and "converged" not in res.detail
    assert res.to_json()["detail"] == row["detail"]


def test_only_facts_that_were_set_are_stored() -> None:
    detail = NodeDetail(iterations=3, converged=False, dry_run=True, planned=None)
    res = NodeResult(node_id="fix", kind="loop", status="succeeded", detail=detail)
    assert res.to_json()["detail"] == {
        "dry_run": True,
        "planned": None,
        "iterations": 3,
        "converged": False,
    }
    assert NodeResult.from_json(res.to_json()).detail == detail


def test_a_result_built_from_a_plain_mapping_gets_the_typed_record() -> None:
    res = NodeResult(node_id="a", kind="llm", status="skipped", detail={"reason": "why"})
    assert isinstance(res.detail, NodeDetail) and res.detail.reason == "why"
    assert NodeResult(node_id="b", kind="gate", status="succeeded").to_json()["detail"] == {}


def test_membership_iteration_and_item_access_agree_for_every_field() -> None:
    """`key in detail`, `detail[key]`, iteration and the stored object say the same facts."""
    values = [None, False, True, 0, 1, 0.5, "", "x", [], ["e"], {"k": 1}]
    names = [f.name for f in dataclasses.fields(NodeDetail) if f.name != "extra"]
    for i, name in enumerate(names):
        for value in values:
            detail = NodeDetail(**{name: value}, extra={"other": i})
            stored = detail.to_json()
            for key in [*names, "other", "absent"]:
                try:
                    detail[key]
                    readable = True
                except KeyError:
                    readable = False
                assert (key in detail) == readable == (key in stored), (name, value, key)
            assert list(detail) == list(stored)
