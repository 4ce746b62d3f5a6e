"""Identities on both stores: a token kept only as its hash, revocation counted at once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.errors import SpecError, UsageError
from runner.runs.identity import (
    Directory,
    Identity,
    add_identity,
    decision_refusal,
    grant,
    revoke_identity,
    token_hash,
)
from runner.store import Store, open_store


def test_a_token_is_stored_hashed_and_revocation_counts_at_once(store: Store, target: str) -> None:
    token = add_identity(
        store, "alice", kind="user", roles=["approver", "leads"], tenants=["acme"], by="root"
    )
    assert token.startswith("fr_") and len(token) > 40
    rows = store.export_rows("identities")
    assert len(rows) == 1 and token not in repr(rows)  # the token itself is nowhere
    assert rows[0]["token_sha256"] == token_hash(token)
    directory = Directory(target)
    who = directory.authenticate(token)
    assert who == Identity(
        name="alice", kind="user", roles=("approver", "leads"), tenants=("acme",), source="store"
    )
    assert directory.authenticate(token + "x") is None
    assert directory.authenticate("") is None
    # another connection revokes: the next lookup through the first one sees it
    other = open_store(target)
    revoke_identity(other, "alice", by="root")
    other.close()
    assert directory.authenticate(token) is None
    assert directory.named("alice") is None
    assert store.identity_get("alice")["revoked_by"] == "root"  # type: ignore[index]
    types = [e["type"] for e in store.events("*")]
    assert types == ["identity_added", "identity_revoked"]
    with pytest.raises(UsageError, match="already exists \\(revoked\\)"):
        add_identity(store, "alice", kind="user")
    with pytest.raises(UsageError, match="already revoked"):
        revoke_identity(store, "alice")
    with pytest.raises(UsageError, match="no identity named 'alic'") as e:
        revoke_identity(store, "alic")
    assert e.value.hint == "did you mean 'alice'?"


def test_an_identities_file_is_read_with_positions_and_reread_when_it_changes(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s.db"
    open_store(store).close()
    f = tmp_path / "ids.yaml"
    f.write_text(
        "identities:\n"
        "  - name: bot\n"
        "    kind: client\n"
        "    scopes: [refunds:read]\n"
        f"    token_sha256: {token_hash('tok-1')}\n"
    )
    d = Directory(store, f)
    who = d.authenticate("tok-1")
    assert who is not None and who.kind == "client" and who.scopes == ("refunds:read",)
    assert who.source == str(f)
    # the entry removed: the token stops working without a restart
    f.write_text("identities: []\n")
    assert d.authenticate("tok-1") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "identities:\n"
        "  - name: bot\n"
        "    rolez: [x]\n"
        "    token_sha256: nothex\n"
        "  - name: bot\n"
        f"    token_sha256: {token_hash('t')}\n"
    )
    with pytest.raises(SpecError) as e:
        Directory(store, bad)
    text = e.value.render()
    assert f"{bad}:3:5: identities: unknown key 'rolez'" in text
    assert f"{bad}:4:19: identities: token_sha256 must be 64 lowercase hex digits" in text


def test_who_may_decide() -> None:
    approval = {"assignees": ["support-leads", "carol"], "allow_self": 0}
    run = SimpleNamespace(tenant="acme", actor="dave")
    lead = Identity(name="erin", kind="user", roles=("support-leads",), tenants=("acme",))
    carol = Identity(name="carol", kind="user", tenants=("*",))
    other = Identity(name="frank", kind="user", roles=("approver",), tenants=("acme",))
    stranger = Identity(name="gina", kind="user", roles=("support-leads",), tenants=("globex",))
    assert decision_refusal(lead, run, approval) is None
    assert decision_refusal(carol, run, approval) is None
    refusal = decision_refusal(other, run, approval)
    assert refusal is not None and "not among the assignees" in refusal[0]
    refusal = decision_refusal(stranger, run, approval)
    assert (
        refusal is not None
        and "does not act for this run's tenant" in refusal[0]
        and "acme" not in refusal[0]
    )
    own = SimpleNamespace(tenant="acme", actor="erin")
    refusal = decision_refusal(lead, own, approval)
    assert refusal is not None and "separation of duties" in refusal[0]
    assert decision_refusal(lead, own, {**approval, "allow_self": 1}) is None
    unassigned = {"assignees": [], "allow_self": 0}
    assert decision_refusal(other, run, unassigned) is None
    refusal = decision_refusal(lead, run, unassigned)
    assert refusal is not None and "'approver' role" in refusal[0]
    bot = Identity(name="bot", kind="client", scopes=("refunds:read", "notes:write"), live=True)
    assert grant(bot, ["refunds:read", "refunds:write"], True) == (["refunds:read"], True)
    assert grant(bot, ["refunds:read"], False) == (["refunds:read"], False)


def test_store_copy_keeps_identities_and_their_tokens(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.store.copy import copy_store

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWRUN_STORE_DIR", str(tmp_path / "local"))
    src = open_store(tmp_path / "s.db")
    token = add_identity(src, "bot", kind="client", scopes=["kb:read"], tenants=["acme"], live=True)
    revoke_token = add_identity(src, "old", kind="user")
    revoke_identity(src, "old")
    dst = open_store(pg_url)
    counts = copy_store(src, dst)
    assert counts["identities"] == (2, 2)
    src.close()
    dst.close()
    d = Directory(pg_url)
    who = d.authenticate(token)
    assert who is not None and (who.scopes, who.tenants, who.live) == (
        ("kb:read",),
        ("acme",),
        True,
    )
    assert d.authenticate(revoke_token) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1:1: identities: the file is empty: expected `identities:` and a list"),
        ("identities: {a: 1}\n", "1:13: identities: Input should be a valid list"),
        ("people: []\n", "1:1: identities: unknown key 'people'"),
        (
            f"identities:\n  - name: 'no spaces'\n    token_sha256: {'a' * 64}\n",
            "2:11: identities: not a valid identity name",
        ),
        (
            f"identities:\n  - name: x\n    roles: ['a b']\n    token_sha256: {'a' * 64}\n",
            "3:13: identities: bad role 'a b'",
        ),
        ("identities:\n  - name: x\n", "2:5: identities: missing required key 'token_sha256'"),
    ],
)
def test_a_bad_identities_file_is_every_problem_with_its_position(
    tmp_path: Path, text: str, expected: str
) -> None:
    from runner.runs.identity import load_identities

    f = tmp_path / "ids.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_identities(f)
    assert f"{f}:{expected}" in e.value.render()
