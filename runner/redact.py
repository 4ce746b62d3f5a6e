"""Secret and personal-data detectors, and the two things done with what they find.

`redact` replaces each finding by `[REDACTED:<kind>]`: every place a run is shown (CLI, console,
MCP, spans, transcripts) calls it. `rewrite` hands each finding to a callback instead: the store
uses it to seal findings at rest (runner/store/seal.py). Both see the same findings, so what a
display hides is exactly what the store encrypts. This module is layer 0: of flowrun it imports
only runner.jsontext (layer 0 too).

Detectors (docs/security.md lists them with examples):
  secret   key formats: OpenAI/Anthropic `sk-…`, Stripe `sk_live_`/`rk_live_`/`sk_test_`…, AWS
           `AKIA…`, GitHub `gh?_…`/`github_pat_…`, Slack `xox?-…`, Google `AIza…`, JWTs, PEM
           private keys, `Bearer …`; values of key-like environment variables (`*_API_KEY`,
           `*_TOKEN`, `*_SECRET`, `*_PASSWORD`); any value under a key-like field name
  token    high-entropy tokens (see `_high_entropy`)
  email, card (Luhn-checked), phone: personal data, when `pii` is asked for
  <name>   a pattern a spec adds in its `redact:` section (`extend`)
A sealed value read raw (`[SEALED:<kind>:…]`) is shown as `[REDACTED:<kind>]`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from runner.jsontext import ORJSON_PASSTHROUGH as _PASSTHROUGH
from runner.jsontext import orjson as _orjson

# (kind, matched text) -> what replaces it
Rewrite = Callable[[str, str], str]

SECRET_KEYS = re.compile(
    r"(api[_-]?key|authorization|auth[_-]?token|access[_-]?token|secret|password|bearer"
    r"|private[_-]?key|client[_-]?secret)",
    re.I,
)
_SECRETS = [
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}", re.I),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|$)",
        re.S,
    ),
]
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# a card number as people write one: 13-19 digits together, or in groups of four (the last
# shorter), or 4-6-5 (Amex); not part of a longer word, so ids and timestamps with digits in
# other groupings (r20261204-222832-3600eaa5) are not cards even when the Luhn check passes
_CARD = re.compile(
    r"(?<![\w-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\w-])"
)
_PHONE = re.compile(
    r"(?<![\w-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w-])"
    r"|(?<![\w+])\+\d{10,15}\b"
)
# a sealed span as the store writes it (runner/store/seal.py): kind, then a Fernet token
SEALED = re.compile(r"\[SEALED:([A-Za-z0-9_.-]+):([A-Za-z0-9_=-]+)\]")
# high-entropy candidates: a run of 24+ token characters, not part of a longer word or path
_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/_=.-])[A-Za-z0-9+/_=-]{24,}(?![A-Za-z0-9+/_=-])")
ENTROPY_MIN_LEN = 24
ENTROPY_RATIO = 0.82  # of the most a string of its length could have (log2 of its length)
_DIGIT_RUN = re.compile(r"\d+")
_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_SEAL_KEY")
_NON_DIGIT = re.compile(r"\D")
_DIGITS = "0123456789"
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a Luhn digit doubled, less 9 when over 9

Span = tuple[int, int, str]


def luhn(digits: str) -> bool:
    rev = digits[::-1]
    total = sum(map(int, rev[0::2])) + sum([_DOUBLED[int(ch)] for ch in rev[1::2]])
    return total % 10 == 0


def _entropy(s: str) -> float:
    n = len(s)
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def high_entropy(s: str) -> bool:
    """Whether a 24+ character token looks random: a key, not an id, a word or a digest.

    It must mix upper case, lower case and digits, with the digits in two or more places (an
    identifier such as `MyLongClassName2024` has one run; lower-case hex digests, UUIDs and
    words have no upper case), and its Shannon entropy must reach ENTROPY_RATIO of log2 of its
    length (a random base62 string of 24 characters has about 0.86 of it, a camel-case name
    about 0.8 or less).
    """
    if len(s) < ENTROPY_MIN_LEN:
        return False
    if s.islower() or s.isupper() or not any(ch in _DIGITS for ch in s):
        return False
    if not any(ch.isupper() for ch in s) or not any(ch.islower() for ch in s):
        return False
    if len(_DIGIT_RUN.findall(s)) < 2:
        return False
    return _entropy(s) >= ENTROPY_RATIO * math.log2(min(len(s), 64))


# perf (issue 11): scanning os.environ decodes every variable, and redact() runs for every
# string of every node; the scan was a third of a traced run. The list is recomputed whenever
# the environment differs from the snapshot it was taken from (one C-level dict compare).
_ENV_CACHE: tuple[dict[Any, Any], list[str]] | None = None


def _env_secrets() -> list[str]:
    """Values of key-like environment variables: a key echoed anywhere is still a key."""
    global _ENV_CACHE
    raw = getattr(os.environ, "_data", None)
    if raw is not None and _ENV_CACHE is not None and _ENV_CACHE[0] == raw:
        return _ENV_CACHE[1]
    values = sorted(
        (
            v
            for k, v in os.environ.items()
            if k.upper().endswith(_ENV_SUFFIXES) and len(v) >= 8 and not v.isdigit()
        ),
        key=len,
        reverse=True,
    )
    if raw is not None:
        _ENV_CACHE = (dict(raw), values)
    return values


# patterns added by specs (`redact:` sections): name -> compiled pattern; process-wide, since a
# value stored by one run may be shown by a process that loaded another spec
_EXTRA: dict[str, re.Pattern[str]] = {}
_EXTRA_FIELDS: set[str] = set()
_GENERATION = [0]  # bumped whenever detectors change: memoised results are dropped


def extend(patterns: Mapping[str, str] = {}, fields: Iterable[str] = ()) -> None:
    """Add a spec's detectors: named regexes (the name is the kind shown) and sensitive field
    names (any value under such a key is a finding of kind `field`). Idempotent."""
    changed = False
    for name, pattern in patterns.items():
        if name not in _EXTRA or _EXTRA[name].pattern != pattern:
            _EXTRA[name] = re.compile(pattern)
            changed = True
    for f in fields:
        if f not in _EXTRA_FIELDS:
            _EXTRA_FIELDS.add(f)
            changed = True
    if changed:
        _GENERATION[0] += 1
        _secret_keys.clear()


BUILTIN_KINDS = frozenset({"secret", "token", "email", "card", "phone"})
_REMEMBERED: dict[str, str] = {}  # value -> kind
_REMEMBER_MAX = 10_000


def remember(kind: str, value: str) -> None:
    """A value the store unsealed as a spec's own kind (or a sensitive field): a process that
    shows it may not have compiled that spec, so the value itself is hidden from now on."""
    if kind in BUILTIN_KINDS or len(value) < 4 or _REMEMBERED.get(value) == kind:
        return
    if len(_REMEMBERED) >= _REMEMBER_MAX:
        _REMEMBERED.clear()
    _REMEMBERED[value] = kind
    _GENERATION[0] += 1


def clear_extensions() -> None:
    """Forget every spec's detectors (tests; a long-lived process that changes specs)."""
    _EXTRA.clear()
    _EXTRA_FIELDS.clear()
    _REMEMBERED.clear()
    _GENERATION[0] += 1
    _secret_keys.clear()


def _secret_spans(text: str, out: list[Span]) -> None:
    # perf (issue 11): every pattern needs a literal (sk-, sk_/rk_, AKIA, gh+_, xox, AIza, eyJ,
    # PRIVATE KEY, or "bearer" in any case: no other character matches those letters under re.I);
    # a text with none of them cannot match, and substring tests are far cheaper than regex scans
    if (
        "sk-" not in text
        and "k_" not in text
        and "AKIA" not in text
        and ("gh" not in text or "_" not in text)
        and "xox" not in text
        and "AIza" not in text
        and "eyJ" not in text
        and "PRIVATE KEY" not in text
        and "bearer" not in text.lower()
    ):
        return
    for pattern in _SECRETS:
        for m in pattern.finditer(text):
            out.append((m.start(), m.end(), "secret"))


def _pii_spans(text: str, out: list[Span]) -> None:
    if text.isascii():
        # perf (issue 11): an email needs an @, a card 13 digits, a phone number 8: skip the
        # scans that cannot match
        digits = sum(map(text.count, _DIGITS))
        at = "@" in text
    else:
        digits, at = 13, True
    if at:
        out.extend((m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
    if digits >= 13:
        for m in _CARD.finditer(text):
            if luhn(_NON_DIGIT.sub("", m.group(0))):
                out.append((m.start(), m.end(), "card"))
    if digits >= 8:
        out.extend((m.start(), m.end(), "phone") for m in _PHONE.finditer(text))


def spans(text: str, *, pii: bool = True) -> list[Span]:
    """Every finding in `text`, as non-overlapping (start, end, kind), in order."""
    return _spans(text, pii, _env_secrets())


# the shortest text a built-in detector can find anything in: an email, `a@b.cd` (the other
# formats are longer; an environment value is a secret from 8 characters, a sealed span's prefix
# has 8); a spec's own patterns and remembered values may be shorter
_SHORTEST_FINDING = 6


def _spans(text: str, pii: bool, env: list[str]) -> list[Span]:
    if len(text) < _SHORTEST_FINDING and not _EXTRA and not _REMEMBERED:
        # perf (issue 26): ids and keys seen for the first time (a node id in every line and
        # row of its node) need no scan
        return []
    found: list[Span] = []
    if "[SEALED:" in text:
        found.extend((m.start(), m.end(), "\0" + m.group(1)) for m in SEALED.finditer(text))
    for value in env:
        start = text.find(value)
        while start >= 0:
            found.append((start, start + len(value), "secret"))
            start = text.find(value, start + len(value))
    _secret_spans(text, found)
    if len(text) >= ENTROPY_MIN_LEN:
        for m in _CANDIDATE.finditer(text):
            if high_entropy(m.group(0)):
                found.append((m.start(), m.end(), "token"))
    if pii:
        _pii_spans(text, found)
    for value, kind in _REMEMBERED.items():
        start = text.find(value)
        while start >= 0:
            found.append((start, start + len(value), kind))
            start = text.find(value, start + len(value))
    for name, pattern in _EXTRA.items():
        found.extend(
            (m.start(), m.end(), name) for m in pattern.finditer(text) if m.end() > m.start()
        )
    if len(found) < 2:
        return found
    found.sort(key=lambda s: (s[0], -s[1]))
    merged = [found[0]]
    for s in found[1:]:
        last = merged[-1]
        if s[0] < last[1]:  # overlapping: the earlier (and longer) finding covers it
            if s[1] > last[1]:
                merged[-1] = (last[0], s[1], last[2])
            continue
        merged.append(s)
    return merged


def _apply(text: str, found: list[Span], fn: Rewrite) -> str:
    out, at = [], 0
    for start, end, kind in found:
        out.append(text[at:start])
        out.append(fn(kind, text[start:end]))  # a sealed span's kind starts with "\0"
        at = end
    out.append(text[at:])
    return "".join(out)


def marker(kind: str, _text: str = "") -> str:
    """What a display shows for a finding (a sealed span shows the kind it was sealed as)."""
    return f"[REDACTED:{kind.lstrip(chr(0))}]"


class _Rewriter:
    """One way of rewriting findings, with its memos.

    perf (issue 11): the same short strings (tool names, policy reasons, statuses, dict keys) are
    rewritten over and over; their results are memoised per environment-secrets snapshot and
    detector generation. Only exact `str` values up to _MEMO_LEN characters are memoised, and a
    full memo is emptied. Ids like idempotency keys ("<run id>:<node id>") are new on every node,
    but their parts repeat. No detector but the sealed-span one can match a ":" (it is checked
    first), and every boundary test they make sees a ":" as the start or end of a string; so a
    short text rewrites as its ":"-separated parts do, each looked up in (or added to) a memo.
    A spec's own patterns may match ":", so with any of them the split is off.
    """

    _MEMO_LEN = 512
    _MEMO_SIZE = 4096
    _SPLIT_LEN = 256
    _CLEAN_SIZE = 16384

    def __init__(self, fn: Rewrite) -> None:
        self.fn = fn
        self._key: tuple[int, int] | None = None
        self._memo: tuple[dict[str, str], dict[str, str]] = ({}, {})  # pii=False, pii=True
        self._parts: tuple[dict[str, str], dict[str, str]] = ({}, {})
        # strings with no finding that are no sensitive field name either (see `_clean`)
        self._clean_strings: tuple[set[str], set[str]] = (set(), set())

    def _fresh(self, env: list[str]) -> None:
        key = (id(env), _GENERATION[0])
        if key != self._key:  # the environment or the detectors changed: results may be stale
            self._key = key
            for memo in (*self._memo, *self._parts, *self._clean_strings):
                memo.clear()

    # perf (issue 19): the store seals ~6 payloads a node and the transcript redacts 3 lines,
    # nearly all with nothing to rewrite, and walking them key by key in Python was ~15% of a
    # run. orjson writes a value's JSON text in C, a split lists its strings, and a set answers
    # whether every one of them is known clean, also in C.
    def _clean(self, value: Any, pii: bool, env: list[str]) -> bool:
        """Whether `walk` would give `value` back as it is (False: it may not).

        `walk` rewrites nothing but exact str values and keys (and a sensitive field's value as
        a whole). orjson refuses what walk treats otherwise (str, dict and list subclasses, with
        the PASSTHROUGH options; non-str keys) and writes every string and key of any other
        value into the text, besides what walk leaves alone (numbers, an enum's value). With no
        backslash in the text nothing in it is escaped: each string is there as it is, between
        two quotes, and there is no quote anywhere else, so splitting the text at its quotes
        gives the strings as every other part. When each of them is clean (no finding, by the
        memoised test walk itself makes, and not a sensitive field name), walk changes nothing.
        """
        try:
            raw = _orjson.dumps(value, None, _PASSTHROUGH)
        except _orjson.JSONEncodeError:
            return False
        return self._clean_json(raw.decode(), pii, env)

    def _clean_json(self, text: str, pii: bool, env: list[str]) -> bool:
        """Whether `walk` would give back as it is the value `text` is the JSON text of, as
        orjson or json (`default=str`) write it: see `_clean`. json writes every string walk
        sees too (a str subclass's as its text, an object's `str()` besides); so with no
        backslash, the same test holds."""
        if "\\" in text:
            return False
        strings = text.split('"')[1::2]
        clean = self._clean_strings[pii]
        if clean.issuperset(strings):
            return True
        memo = self._memo[pii]
        # perf (issue 19): only the strings not known clean are tested (most are known)
        for string in set(strings).difference(clean):
            out = memo.get(string)
            if out is None:
                out = self._str(string, pii, env, memo)
            if out != string or _is_secret_key(string):
                return False
            if len(string) <= self._MEMO_LEN:
                if len(clean) >= self._CLEAN_SIZE:
                    clean.clear()
                clean.add(string)
        return True

    def _whole(self, text: str, pii: bool, env: list[str]) -> str:
        found = _spans(text, pii, env)
        return _apply(text, found, self.fn) if found else text

    def text(self, text: str, pii: bool, env: list[str]) -> str:
        if ":" not in text or len(text) > self._SPLIT_LEN or _EXTRA or _REMEMBERED:
            return self._whole(text, pii, env)
        if "[SEALED:" in text:
            return self._whole(text, pii, env)
        if env and any(":" in v for v in env):
            return self._whole(text, pii, env)
        memo = self._parts[pii]
        out = []
        for part in text.split(":"):
            done = memo.get(part)
            if done is None:
                if len(memo) >= self._MEMO_SIZE:
                    memo.clear()
                done = memo[part] = self._whole(part, pii, env)
            out.append(done)
        return ":".join(out)

    def _str(self, value: str, pii: bool, env: list[str], memo: dict[str, str]) -> str:
        out = self.text(value, pii, env)
        if len(value) <= self._MEMO_LEN:
            if len(memo) >= self._MEMO_SIZE:
                memo.clear()
            memo[value] = out
        return out

    # perf: the store seals every payload it writes (~7 a node), so leaves (memoised strings,
    # numbers) are handled in the container's loop, without a call per leaf; and (issue 19) a
    # container with nothing to rewrite is given back as is, not rebuilt: a container is copied
    # from its first changed entry on, the entries before it taken over unchanged
    def walk(self, value: Any, pii: bool, env: list[str], memo: dict[str, str]) -> Any:
        """`value` with its findings rewritten; unchanged containers are `value`'s own."""
        cls = type(value)
        if cls is str:
            out = memo.get(value)
            if out is None:
                out = self._str(value, pii, env, memo)
            # the memo's string may be an equal one of another value: unchanged is `value`
            return value if out == value else out
        if cls is int or cls is float or cls is bool or value is None:
            return value
        if isinstance(value, str):  # a str subclass: not memoised
            return self.text(value, pii, env)
        if isinstance(value, dict):
            out_d: dict[Any, Any] | None = None
            for i, (k, v) in enumerate(value.items()):
                if type(k) is str:
                    secret = _secret_keys.get(k)
                    if secret is None:
                        if len(_secret_keys) >= self._MEMO_SIZE:
                            _secret_keys.clear()
                        secret = _secret_keys[k] = _is_secret_key(k)
                    key = memo.get(k)
                    if key is None:
                        key = self._str(k, pii, env, memo)
                else:
                    secret, key = False, k
                if secret and v is not None:
                    new = self._field(k, v)
                else:
                    vc = type(v)
                    if vc is str:
                        new = memo.get(v)
                        if new is None:
                            new = self._str(v, pii, env, memo)
                    elif vc is int or vc is float or vc is bool or v is None:
                        new = v
                    else:
                        new = self.walk(v, pii, env, memo)
                if out_d is None:
                    if (new is v or (type(new) is str and new == v)) and key == k:
                        continue
                    out_d = dict(islice(value.items(), i))
                out_d[key] = new
            return value if out_d is None else out_d
        if isinstance(value, list | tuple):
            out_l: list[Any] | None = None
            for i, v in enumerate(value):
                vc = type(v)
                if vc is str:
                    new = memo.get(v)
                    if new is None:
                        new = self._str(v, pii, env, memo)
                elif vc is int or vc is float or vc is bool or v is None:
                    new = v
                else:
                    new = self.walk(v, pii, env, memo)
                if out_l is None:
                    if new is v or (type(new) is str and new == v):
                        continue
                    out_l = list(value[:i])
                out_l.append(new)
            return value if out_l is None else out_l
        return value

    def _field(self, key: str, value: Any) -> Any:
        """A value under a sensitive field name is one finding as a whole (for a display), or
        each string in it is one (for sealing, which must give the value back as it was)."""
        kind = "secret" if SECRET_KEYS.search(key) else "field"
        if self.fn is marker:
            return marker(kind)
        if isinstance(value, str):
            return self.fn("\0" + kind if SEALED.fullmatch(value) else kind, value)
        if isinstance(value, dict):  # its keys are part of the value, and sealed with it
            return {self._field(key, k): self._field(key, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._field(key, v) for v in value]
        return value

    def __call__(self, value: Any, pii: bool) -> Any:
        """`value` with its findings rewritten, sharing the parts that had none (see `walk`):
        for reading and encoding; `copy` gives a value of its own."""
        env = _env_secrets()
        self._fresh(env)
        if _orjson is not None and type(value) in _SCREENED and self._clean(value, pii, env):
            return value
        return self.walk(value, pii, env, self._memo[pii])

    def encoded(self, value: Any, pii: bool, encode: Callable[[Any], str]) -> str:
        """`encode(self(value, pii))`: the text of `value` itself when it has nothing to
        rewrite (perf, issue 19: one encoding of a clean payload, and no second one to screen
        it)."""
        env = _env_secrets()
        self._fresh(env)
        text = encode(value)
        if self._clean_json(text, pii, env):
            return text
        return encode(self.walk(value, pii, env, self._memo[pii]))

    def copy(self, value: Any, pii: bool) -> Any:
        """`value` with its findings rewritten, in new containers (tuples become lists)."""
        return _copy_json(self(value, pii))


# the values `_Rewriter._clean` screens: containers (a str is one memo look-up anyway)
_SCREENED = frozenset({dict, list})


def _copy_json(value: Any) -> Any:
    """New containers for a JSON-ish value (as `json.loads(json.dumps(value))` would make,
    leaves shared)."""
    cls = type(value)
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value


_secret_keys: dict[str, bool] = {}


# perf (issue 19): every SECRET_KEYS alternative holds one of these words; an ASCII text with none
# of them in any case cannot match (under re.I only non-ASCII letters such as the Kelvin sign
# fold onto ASCII ones: those texts take the regex). The scan tries every alternative at every
# position, and the ids and keys seen once per node (idempotency keys) each paid for one.
_SECRET_KEY_WORDS = ("key", "auth", "token", "secret", "password", "bearer")


def _is_secret_key(k: str) -> bool:
    if k in _EXTRA_FIELDS:
        return True
    if k.isascii():
        low = k.lower()
        if not any(w in low for w in _SECRET_KEY_WORDS):
            return False
    return SECRET_KEYS.search(k) is not None


_REDACTOR = _Rewriter(marker)


def redact(value: Any, *, pii: bool) -> Any:
    """A copy of a JSON value with secrets (and, if `pii`, emails, cards, phones) replaced."""
    return _REDACTOR.copy(value, pii)


def redacted_view(value: Any, *, pii: bool) -> Any:
    """`redact` without the copy: the parts of `value` with nothing to redact are `value`'s own
    (the value itself when it has none). For what is encoded or read at once, never changed."""
    return _REDACTOR(value, pii)


def show(value: Any) -> Any:
    """What a display shows of a run's data: secrets and personal data redacted."""
    return _REDACTOR.copy(value, True)


def redact_secrets(text: str) -> str:
    return redact(text, pii=False)  # type: ignore[no-any-return]


def redact_pii(text: str) -> str:
    return redact(text, pii=True)  # type: ignore[no-any-return]


def rewriter(fn: Rewrite) -> _Rewriter:
    """A walker that hands every finding (secrets, personal data if asked) to `fn`."""
    return _Rewriter(fn)


def show_keeping(text: str, keep: Iterable[str] = ()) -> str:
    """`show` of a message that names identities on purpose (who approved, who started): each
    of `keep` stays as is, the text around them is redacted."""
    kept = sorted({k for k in keep if k}, key=len, reverse=True)
    if not kept:
        return str(show(text))
    # split on the identities, kept in the result at the odd places (a capturing group)
    parts = re.split("(" + "|".join(map(re.escape, kept)) + ")", text)
    return "".join(p if n % 2 else str(show(p)) for n, p in enumerate(parts))


def echo(message: str | None = None, err: bool = False) -> None:
    """Print a line of a command's output as shown: redacted (what entry points print with)."""
    import click

    click.echo(show(message) if message is not None else None, err=err)


def echo_error(err: Any) -> None:
    """Print a flowrun error as shown: a value it quotes is redacted, who acted (its
    `identities`, an approver, a run's actor) is named as is."""
    import click

    click.echo(show_keeping(err.render(), getattr(err, "identities", ())), err=True)


def echo_json(value: Any, indent: int | None = 2) -> None:
    """Print data as JSON, redacted value by value (redacting the JSON text instead could cut
    into an escape such as the `n` of `\\n`)."""
    import click

    shown = show(value)
    if indent is None:
        import json

        click.echo(json.dumps(shown, default=str))
    else:
        from runner.jsontext import dumps_indented

        click.echo(dumps_indented(shown, indent))
