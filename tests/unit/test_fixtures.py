"""Every rule has a bad spec in tests/fixtures/err that reports exactly its declared diagnostics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.errors import Diagnostic, SpecError
from runner.plan.compile import compile_plan
from runner.plan.rules import RULES
from runner.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ERR = sorted((FIXTURES / "err").glob("*.yaml"))
OK = sorted((FIXTURES / "ok").glob("*.yaml"))

# Rules about the file itself; test_compiler.py makes those files in tmp_path.
FILE_RULES = {"file-not-found", "file-unreadable", "not-utf8", "spec-too-large", "empty-spec"}

_EXPECT = re.compile(
    r"^# expect: (?P<rule>[a-z0-9-]+) (?:(?P<file>\S+):)?(?P<line>\d+):(?P<col>\d+)$"
)
_PROFILE = re.compile(r"^# profile: (?P<name>\S+)$")

Expected = tuple[str, str, int, int]


def _header(path: Path) -> tuple[set[Expected], str | None]:
    """The `# expect:` lines (rule, file, line, col) and the `# profile:` of a fixture."""
    expected: set[Expected] = set()
    profile = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if m := _EXPECT.match(line):
            file = str(path.parent / m["file"]) if m["file"] else str(path)
            expected.add((m["rule"], file, int(m["line"]), int(m["col"])))
        elif m := _PROFILE.match(line):
            profile = m["name"]
    return expected, profile


def _diagnostics(path: Path, profile: str | None) -> list[Diagnostic]:
    """Errors when the spec fails, else the plan's warnings."""
    try:
        plan = compile_plan(load_spec(path), profile)
    except SpecError as e:
        return e.diagnostics
    return list(plan.warnings)


@pytest.mark.parametrize("path", ERR, ids=[p.stem for p in ERR])
def test_err_fixture_reports_exactly_its_expectations(path: Path) -> None:
    expected, profile = _header(path)
    assert expected, f"{path.name} declares no `# expect:` line"
    diags = _diagnostics(path, profile)
    got = {(d.rule, d.file, d.line, d.col) for d in diags}
    assert got == expected, "\n".join(d.render() for d in diags)
    assert len(diags) == len(expected), "a problem was reported twice"
    for d in diags:
        first = d.render().splitlines()[0]
        pattern = rf"^{re.escape(d.file)}:\d+:\d+: (?:warning: )?{re.escape(d.rule)}: .+"
        assert re.match(pattern, first), first
        assert d.file in (str(path), *(e[1] for e in expected))


def test_every_rule_has_an_err_fixture() -> None:
    covered = {rule for p in ERR for rule, *_ in _header(p)[0]}
    missing = set(RULES) - FILE_RULES - covered
    assert not missing, f"no fixture in tests/fixtures/err for: {sorted(missing)}"
    assert covered <= set(RULES), f"fixtures expect unknown rules: {sorted(covered - set(RULES))}"
    for rule in set(RULES) - FILE_RULES:
        assert (FIXTURES / "err" / f"{rule}.yaml").is_file(), f"missing err/{rule}.yaml"


@pytest.mark.parametrize("path", OK, ids=[p.stem for p in OK])
def test_ok_fixture_compiles_without_diagnostics(path: Path) -> None:
    plan = compile_plan(load_spec(path))
    assert not plan.warnings, "\n".join(w.render() for w in plan.warnings)
    assert set(plan.order) == set(load_spec(path).spec.nodes)


def test_ok_fixtures_exist() -> None:
    assert len(OK) >= 4


DOCS = Path(__file__).resolve().parents[2] / "docs" / "checks.md"
_DOC_EXAMPLE = re.compile(
    r"^Fixture: `(?P<path>[^`]+)`(?: \(validated with `--profile (?P<profile>\S+)`\))?$"
    r".*?^Output:\n\n```text\n(?P<out>.*?)\n```",
    re.S | re.M,
)


def _rendered(path: Path, profile: str | None) -> str:
    try:
        plan = compile_plan(load_spec(path), profile)
    except SpecError as e:
        return "\n".join([*(d.render() for d in e.diagnostics), e.message])
    return "\n".join(w.render() for w in plan.warnings)


def test_docs_have_a_section_for_every_rule() -> None:
    headings = set(re.findall(r"^## (\S+)$", DOCS.read_text(encoding="utf-8"), re.M))
    assert set(RULES) <= headings, sorted(set(RULES) - headings)


def test_docs_show_the_current_output_of_each_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DOCS.parents[1])  # the docs show paths relative to the repository
    examples = list(_DOC_EXAMPLE.finditer(DOCS.read_text(encoding="utf-8")))
    assert len(examples) >= len(set(RULES) - FILE_RULES)
    for m in examples:
        assert _rendered(Path(m["path"]), m["profile"]) == m["out"], m["path"]
