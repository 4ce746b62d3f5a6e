"""The detectors of runner/redact.py: what they hide, and what they must leave readable."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import redact as detectors
from runner.plan.compile import compile_plan
from runner.redact import clear_extensions, extend, high_entropy, redact, spans
from runner.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]

# assembled at run time so that the repository holds no literal key
KEYS = {
    "openai": "sk-proj-" + "Q7xT2mW9" * 4,
    "anthropic": "sk-ant-api03-" + "Zr8Kp3Lw" * 4,
    "stripe_live": "sk_live_" + "51HxYzABCdefGHIjkl0123",
    "stripe_restricted": "rk_live_" + "51HxYzABCdefGHIjkl0123",
    "stripe_test": "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "github_pat": "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnop",
    "slack": "xoxb-" + "1234567890-abcdefghij",
    "google": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "bearer": "Bearer abcdefghijklmnop",
    "random": "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9",
}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_formats_are_hidden_in_any_mode(name: str) -> None:
    text = f"use {KEYS[name]} now"
    for pii in (False, True):
        out = redact({"note": text}, pii=pii)["note"]
        assert KEYS[name] not in out and "[REDACTED:" in out
        assert out.startswith("use ") and out.endswith(" now")


def test_personal_data_only_when_asked() -> None:
    text = "mail maya@example.com card 4111 1111 1111 1111 phone +1 415-555-0134"
    shown = redact(text, pii=True)
    assert shown == "mail [REDACTED:email] card [REDACTED:card] phone [REDACTED:phone]"
    assert redact(text, pii=False) == text


def test_card_needs_a_luhn_check() -> None:
    assert redact("card 4111111111111112", pii=True) == "card 4111111111111112"
    assert redact("card 4111111111111111", pii=True) == "card [REDACTED:card]"


def test_env_values_and_key_named_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "plainvalue-not-a-pattern")
    out = redact({"body": "x plainvalue-not-a-pattern y", "password": 1234}, pii=False)
    assert out == {"body": "x [REDACTED:secret] y", "password": "[REDACTED:secret]"}


@pytest.mark.parametrize(
    "text",
    [
        hashlib.sha256(b"bundle").hexdigest(),  # digests shown on purpose
        hashlib.sha1(b"commit").hexdigest().upper(),
        str(uuid.UUID(int=12345678901234567890)),
        "r20250101-120000-ab12cd34ef56",  # run ids
        "MyVeryLongCamelCaseClassName2024",  # identifiers
        "getUserAccountBalanceV2Handler",
        "Supercalifragilisticexpialidocious",  # words
        "support_refund:verify_customer:attempt_2",  # idempotency keys
        "/home/user/projects/flowrun/examples/SupportRefund2/spec.yaml",  # paths
        "O-5001",
        "r20261204-222832-3600eaa5",  # a run id whose digits pass the Luhn check
        "20261204-222832-3600",
    ],
)
def test_ordinary_ids_digests_and_words_stay_readable(text: str) -> None:
    assert not high_entropy(text)
    assert redact({"v": text}, pii=True) == {"v": text}


def test_random_tokens_are_caught_at_the_threshold() -> None:
    import random

    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    tokens = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(200)]
    caught = sum(high_entropy(t) for t in tokens)
    assert caught >= 190, caught  # the rule misses few random 32-character tokens


def test_a_spec_can_add_patterns_and_fields() -> None:
    extend({"employee_id": r"\bEMP-\d{6}\b"}, ["ssn"])
    try:
        out = redact({"who": "EMP-123456 asked", "ssn": "078-05-1120"}, pii=False)
    finally:
        clear_extensions()
    assert out == {"who": "[REDACTED:employee_id] asked", "ssn": "[REDACTED:field]"}


def test_spans_do_not_overlap() -> None:
    key = KEYS["stripe_live"]
    found = spans(f"{key} and Bearer {key}")
    assert [kind for _, _, kind in found] == ["secret", "secret"]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(found))


SPEC = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: hr}
redact:
  patterns:
    employee_id: '%s'
  fields: [ssn]
tools:
  echo: {impl: tests.security.stools:lookup}
nodes:
  a: {tool: echo, args: {email: x, card: "1234"}}
"""


def test_a_spec_redact_section_extends_the_detectors(tmp_path: Path) -> None:
    path = tmp_path / "hr.yaml"
    path.write_text(SPEC % r"\bEMP-\d{6}\b")
    try:
        compile_plan(load_spec(path), None)
        assert redact({"x": "EMP-123456", "ssn": "078-05-1120"}, pii=False) == {
            "x": "[REDACTED:employee_id]",
            "ssn": "[REDACTED:field]",
        }
    finally:
        clear_extensions()


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("EMP-(", "not a regular expression"), ("x*", "matches the empty string")],
)
def test_a_bad_redact_pattern_is_refused_where_it_is(
    tmp_path: Path, pattern: str, message: str
) -> None:
    path = tmp_path / "hr.yaml"
    path.write_text(SPEC % pattern)
    res = subprocess.run(
        [sys.executable, "-m", "runner.cli", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 2
    assert f"{path}:6:" in res.stderr + res.stdout and message in res.stderr + res.stdout


# the characters the built-in formats are made of, so that short texts come close to matching
_NEAR_MISSES = st.text(alphabet="aZk_-.@+() 0123456789sAKIxyeJ:[]/\n", max_size=5)


@given(_NEAR_MISSES)
def test_no_builtin_detector_finds_anything_in_a_text_shorter_than_six(text: str) -> None:
    """What lets the detectors skip short texts: no built-in pattern matches one."""
    patterns = [
        *detectors._SECRETS,
        detectors._EMAIL,
        detectors._CARD,
        detectors._PHONE,
        detectors._CANDIDATE,
        detectors.SEALED,
    ]
    assert [p.pattern for p in patterns if p.search(text)] == []
    assert redact(text, pii=True) == text


def test_the_shortest_findings_are_still_found(monkeypatch: pytest.MonkeyPatch) -> None:
    assert spans("a@b.cd") == [(0, 6, "email")]
    assert redact({"id": "a@b.cd"}, pii=True) == {"id": "[REDACTED:email]"}
    monkeypatch.setenv("SHORT_TOKEN", "k3y!k3y!")  # an environment secret of 8 characters
    assert redact("k3y!k3y!", pii=False) == "[REDACTED:secret]"


def test_a_spec_pattern_and_a_remembered_value_find_short_texts() -> None:
    try:
        extend({"ticket": r"T-\d+"})
        assert redact("T-42", pii=False) == "[REDACTED:ticket]"
        assert redact({"t": "T-7"}, pii=False) == {"t": "[REDACTED:ticket]"}
        clear_extensions()
        detectors.remember("code", "Q7x9")  # unsealed as a spec's kind by another process
        assert redact({"c": "Q7x9"}, pii=False) == {"c": "[REDACTED:code]"}
    finally:
        clear_extensions()


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(
        ["plain", "ok", "n1", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "a@b.cd", "4242 4242 4242 4242"]
    ),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "password", "note", "k"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_JSON, st.booleans())
def test_the_shared_view_finds_what_the_copy_finds_and_changes_nothing(
    value: object, pii: bool
) -> None:
    """redacted_view is redact without the copy: the same result, the original untouched,
    and a value with nothing to redact given back as itself."""
    import copy

    from runner.redact import redacted_view

    before = copy.deepcopy(value)
    view = redacted_view(value, pii=pii)
    copied = redact(value, pii=pii)
    assert view == copied and value == before
    if copied == value:
        assert view is value
    if isinstance(copied, dict | list) and copied:
        assert copied is not value


def test_the_shared_view_copies_only_the_containers_on_the_way_to_a_finding() -> None:
    from runner.redact import redacted_view

    clean = {"k": [1, 2], "n": {"deep": "plain"}}
    value = {"a": clean, "b": {"note": "mail a@b.cd", "same": [3]}}
    view = redacted_view(value, pii=True)
    assert view["b"]["note"] == "mail [REDACTED:email]"
    assert view["a"] is clean and view["b"]["same"] is value["b"]["same"]
    assert view is not value and view["b"] is not value["b"]
    assert value["b"]["note"] == "mail a@b.cd"


# strings that JSON text escapes, sensitive field names as values, findings and near misses
_TRICKY = st.one_of(
    st.sampled_from(
        [
            "plain",
            "password",
            "api_key",
            'say "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
            "line\nmaya@example.com",
            "tab\t4111 1111 1111 1111",
            "back\\slash 415-555-0134",
            "é maya@example.com",
            "r20261204-222832-3600eaa5:n1",
            "Bearer abcdefgh12345678",
        ]
    ),
    st.text(alphabet='ab@.c"\\\n:é0123456789 -', max_size=16),
)
_TRICKY_JSON = st.recursive(
    st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), _TRICKY),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.one_of(st.sampled_from(["a", "password", "api_key", "note"]), _TRICKY),
            inner,
            max_size=4,
        )
    ),
    max_leaves=16,
)


def _leaf_by_leaf(value: object, pii: bool) -> object:
    """What redaction must make of a value: each string redacted on its own (a bare string is
    never screened as JSON text), a sensitive field's value hidden whole."""
    if isinstance(value, str):
        return redact(value, pii=pii)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if detectors.SECRET_KEYS.search(k) and v is not None:
                out[redact(k, pii=pii)] = "[REDACTED:secret]"
            else:
                out[redact(k, pii=pii)] = _leaf_by_leaf(v, pii)
        return out
    if isinstance(value, list | tuple):
        return [_leaf_by_leaf(v, pii) for v in value]
    return value


@given(_TRICKY_JSON, st.booleans())
def test_a_whole_value_is_redacted_as_its_strings_are_one_by_one(value: object, pii: bool) -> None:
    """The screen that lets clean values skip the walk never lets a finding through."""
    import json

    got = json.dumps(redact(value, pii=pii))
    assert got == json.dumps(_leaf_by_leaf(value, pii))


@given(_TRICKY_JSON)
def test_the_store_seals_every_finding_of_a_whole_value(value: object) -> None:
    import json

    from runner.store.seal import Sealer

    sealer = Sealer(Sealer.new_key())
    text = json.dumps(sealer.seal(value))
    assert json.dumps(json.loads(sealer.unseal_json(text))) == json.dumps(value)
    for secret in ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "maya@example.com", "4111 1111 1111"):
        assert secret not in text


@given(_TRICKY_JSON)
def test_the_store_text_of_a_value_seals_every_finding(value: object) -> None:
    """The store's one encoding of a clean payload (`seal_encoded`) is the text of the sealed
    value, and a payload with findings is still sealed."""
    import json

    from runner.store.base import _encode
    from runner.store.seal import Sealer

    sealer = Sealer(Sealer.new_key())
    text = sealer.seal_encoded(value, _encode)
    opened = json.loads(sealer.unseal_json(text))
    assert json.dumps(opened, sort_keys=True) == json.dumps(value, sort_keys=True)
    for secret in ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "maya@example.com", "4111 1111 1111"):
        assert secret not in text
    if "[SEALED:" not in text:
        assert text == _encode(value)


_KEY_PARTS = st.sampled_from(
    ["api", "KEY", "Key", "_", "-", "auth", "Token", "access", "secret", "PassWord", "bearer",
     "private", "client", "id", "n1", ":", "r2026", "\u212a", "\u017f", "é", "x"]
)  # fmt: skip


@given(st.lists(_KEY_PARTS, max_size=6).map("".join))
def test_a_field_is_sensitive_exactly_when_its_name_matches_the_secret_key_pattern(
    name: str,
) -> None:
    """The quick word test in front of the pattern never decides otherwise than the pattern,
    case and Unicode case folding (the Kelvin sign, the long s) included."""
    sensitive = detectors.SECRET_KEYS.search(name) is not None
    assert (redact({name: "plain"}, pii=False)[name] != "plain") is sensitive
