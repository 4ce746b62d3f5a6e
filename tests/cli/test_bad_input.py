"""Bad input runs nothing: a clear message on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.cli import main
from tests.cli.conftest import (
    EXAMPLES,
    SPEC,
    Proc,
    listing,
    run_flowrun,
    table_counts,
)

SPEC_TEXT = SPEC.read_text(encoding="utf-8")
GOOD_INPUT = '{"ticket_id": "T-1001"}'
GOOD_RESPONSES = EXAMPLES / "responses" / "refund_granted.jsonl"

# files a case can refer to; written fresh into each case's own input folder
FILES: dict[str, str] = {
    "empty.yaml": "",
    "not_yaml.yaml": "a: [1, 2\n",
    "list.yaml": "- apiVersion: flowrun/v1\n- kind: Workflow\n",
    "scalar.yaml": "just a sentence\n",
    "wrong_api.yaml": SPEC_TEXT.replace("apiVersion: flowrun/v1", "apiVersion: flowrun/v2", 1),
    "unknown_key.yaml": SPEC_TEXT.replace("\nbudget:\n", "\nbudgte:\n", 1),
    "unknown_node_key.yaml": SPEC_TEXT.replace(
        "    retry: {max_attempts: 3", "    retyr: {max_attempts: 3", 1
    ),
    "huge.yaml": "apiVersion: flowrun/v1\nkind: Workflow\n# " + "x" * (10 * 1024 * 1024) + "\n",
    "input_wrong_type.json": '{"ticket_id": 1001}',
    "input_bad_pattern.json": '{"ticket_id": "1001"}',
    "input_list.json": '["T-1001"]',
    "input_not_json.json": "ticket_id = T-1001\n",
    "responses_unknown_node.jsonl": GOOD_RESPONSES.read_text(encoding="utf-8")
    + GOOD_RESPONSES.read_text(encoding="utf-8").splitlines()[1].replace('"propose"', '"proposal"')
    + "\n",
    "responses_not_jsonl.jsonl": "node: classify\ncontent: refund\n",
    "input_deep.json": "[" * 100_000 + "]" * 100_000,
    "responses_deep.jsonl": '{"node": "classify", "content": '
    + "[" * 100_000
    + "]" * 100_000
    + "}\n",
    "bad_int.yaml": SPEC_TEXT.replace("max_tool_calls: 8", "max_tool_calls: !!int many", 1),
    "nan_budget.yaml": SPEC_TEXT.replace("max_seconds: 120", "max_seconds: .nan", 1),
}


@dataclass(frozen=True)
class Case:
    """One bad command line and what its message must say."""

    argv: Callable[[Path], list[str | Path]]  # given the folder holding FILES
    expect: tuple[str, ...]  # substrings (or /regex/) that must appear on stderr


def _execute(*extra: str | Path, spec: str | Path = SPEC) -> Callable[[Path], list[str | Path]]:
    def argv(d: Path) -> list[str | Path]:
        return ["execute", spec, *(d / a if str(a) in FILES else a for a in extra)]

    return argv


def _validate(name: str | Path, *extra: str) -> Callable[[Path], list[str | Path]]:
    return lambda d: ["validate", d / name if str(name) in FILES else name, *extra]


CASES: dict[str, Case] = {
    "missing_spec": Case(
        lambda d: ["validate", "missing.yaml"],
        ("/missing.yaml:1:1: file-not-found: /", "no such file"),
    ),
    "spec_is_directory": Case(lambda d: ["validate", d], ("is a directory",)),
    "empty_spec": Case(_validate("empty.yaml"), ("/empty.yaml:1:1: empty-spec: /",)),
    "not_yaml": Case(_validate("not_yaml.yaml"), (r"/not_yaml.yaml:\d+:\d+: yaml-syntax: /",)),
    "yaml_list": Case(_validate("list.yaml"), ("/list.yaml:1:1: not-a-mapping: /", "not a list")),
    "yaml_scalar": Case(_validate("scalar.yaml"), ("/scalar.yaml:1:1: not-a-mapping: /",)),
    "wrong_api_version": Case(
        _validate("wrong_api.yaml"),
        (r"/wrong_api.yaml:2:\d+: api-version: /", "'flowrun/v2'", "'flowrun/v1'"),
    ),
    "unknown_top_key": Case(
        _validate("unknown_key.yaml"),
        (r"/unknown_key.yaml:\d+:1: unknown-key: /", "'budgte'", "did you mean 'budget'?"),
    ),
    "unknown_node_key": Case(
        _validate("unknown_node_key.yaml"),
        (r"/unknown_node_key.yaml:\d+:5: unknown-key: /", "'retyr'", "did you mean 'retry'?"),
    ),
    "huge_spec": Case(_validate("huge.yaml"), ("spec-too-large", "10.0 MiB")),
    "unknown_profile_validate": Case(
        _validate(SPEC, "--profile", "staging"), ("unknown-profile", "'staging'", "ci, local, prod")
    ),
    "unknown_profile_execute": Case(
        _execute("--input-json", GOOD_INPUT, "--profile", "staging"),
        ("unknown-profile", "'staging'"),
    ),
    "input_wrong_type": Case(
        _execute("--input", "input_wrong_type.json"),
        ("ticket_id", "inputs schema", "not of type 'string'"),
    ),
    "input_bad_pattern": Case(
        _execute("--input", "input_bad_pattern.json"), ("ticket_id", "does not match")
    ),
    "input_json_missing_field": Case(
        _execute("--input-json", "{}"), ("--input-json", "'ticket_id'")
    ),
    "input_not_an_object": Case(_execute("--input", "input_list.json"), ("must be a JSON object",)),
    "input_file_missing": Case(_execute("--input", "nowhere.json"), ("--input", "'nowhere.json'")),
    "input_file_not_json": Case(
        _execute("--input", "input_not_json.json"), ("/input_not_json.json:1:1: not JSON/",)
    ),
    "input_json_not_json": Case(
        _execute("--input-json", "{ticket_id: T-1}"), ("--input-json: not JSON",)
    ),
    "input_both": Case(
        _execute("--input", "input_wrong_type.json", "--input-json", GOOD_INPUT), ("not both",)
    ),
    "responses_unknown_node": Case(
        _execute("--input-json", GOOD_INPUT, "--responses", "responses_unknown_node.jsonl"),
        ("/responses_unknown_node.jsonl:3: node 'proposal'/", "did you mean 'propose'?"),
    ),
    "responses_not_jsonl": Case(
        _execute("--input-json", GOOD_INPUT, "--responses", "responses_not_jsonl.jsonl"),
        ("/responses_not_jsonl.jsonl:1: /", "JSON"),
    ),
    "responses_missing": Case(
        _execute("--input-json", GOOD_INPUT, "--responses", "nowhere.jsonl"),
        ("nowhere.jsonl", "not found"),
    ),
    "spec_is_a_device": Case(
        lambda d: ["validate", "/dev/zero"], ("file-unreadable", "not a regular file")
    ),
    "spec_bad_int_tag": Case(
        _validate("bad_int.yaml"), ("yaml-syntax", "invalid !!int value 'many'")
    ),
    "spec_nan_duration": Case(_validate("nan_budget.yaml"), ("invalid-value", "finite")),
    "input_is_a_device": Case(_execute("--input", "/dev/zero"), ("--input", "not a regular file")),
    "input_nested_too_deep": Case(
        _execute("--input", "input_deep.json"), ("/input_deep.json:1:1: not JSON: nests deeper/",)
    ),
    "input_json_nested_too_deep": Case(
        _execute("--input-json", "[" * 100_000 + "]" * 100_000), ("--input-json: not JSON", "nests")
    ),
    "responses_nested_too_deep": Case(
        _execute("--input-json", GOOD_INPUT, "--responses", "responses_deep.jsonl"),
        ("/responses_deep.jsonl:1: /", "nests deeper than 100 levels"),
    ),
    "run_id_is_a_path": Case(
        _execute("--input-json", GOOD_INPUT, "--run-id", "../../escaped"),
        ("--run-id", "'../../escaped' is not a valid run id"),
    ),
    "output_xml": Case(
        _validate(SPEC, "--output", "xml"), ("'xml' is not one of", "'text', 'json'")
    ),
    "execute_output_xml": Case(_execute("--input-json", GOOD_INPUT, "--output", "xml"), ("'xml'",)),
    "unknown_command": Case(lambda d: ["frobnicate", SPEC], ("No such command 'frobnicate'",)),
    "unknown_option": Case(_validate(SPEC, "--colour"), ("No such option '--colour'",)),
    "missing_argument": Case(lambda d: ["execute"], ("Missing argument 'SPEC'",)),
}


@dataclass(frozen=True)
class Outcome:
    """A bad command's result plus what it left behind."""

    proc: Proc
    cwd_before: set[str]
    cwd_after: set[str]
    db_before: dict[str, int]
    db_after: dict[str, int]


def _prepare(root: Path, template: Path) -> tuple[Path, Path, Path]:
    """A folder of input files, an empty working directory and a private database copy."""
    inputs, cwd, db = root / "in", root / "cwd", root / "support.sqlite"
    inputs.mkdir(parents=True)
    cwd.mkdir()
    for fname, text in FILES.items():
        (inputs / fname).write_text(text, encoding="utf-8")
    shutil.copyfile(template, db)
    return inputs, cwd, db


def _check(name: str, out: Outcome) -> None:
    p = out.proc
    assert p.rc == 2, str(p)
    assert "Traceback" not in p.stderr + p.stdout, str(p)
    assert "internal error" not in p.stderr, str(p)
    assert p.stdout == "", str(p)  # messages go to stderr; stdout stays parseable
    missing = [e for e in CASES[name].expect if not _matches(e, p.stderr)]
    assert not missing, f"stderr lacks {missing}\n{p}"
    assert out.cwd_after == out.cwd_before == set(), out.cwd_after
    assert out.db_after == out.db_before
    assert out.db_after["refunds"] == 0 and out.db_after["ticket_notes"] == 0


def _matches(pattern: str, text: str) -> bool:
    if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
        return re.search(pattern[1:-1], text) is not None
    return pattern in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_through_main(
    name: str,
    tmp_path: Path,
    seeded_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every case through the console entry point `runner.cli:main`, in this process (fast)."""
    inputs, cwd, db = _prepare(tmp_path / name, seeded_template)
    argv = [str(a) for a in CASES[name].argv(inputs)]
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    monkeypatch.delenv("FLOWRUN_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["flowrun", *argv])
    before, db_before = listing(cwd), table_counts(db)
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    rc = exc.value.code if isinstance(exc.value.code, int) else 1
    proc = Proc(tuple(argv), rc, captured.out, captured.err)
    _check(name, Outcome(proc, before, listing(cwd), db_before, table_counts(db)))


# one case per layer (spec file, YAML, model, size, input, responses, click) as a real process
IN_A_PROCESS = (
    "missing_spec",
    "spec_is_directory",
    "not_yaml",
    "unknown_top_key",
    "huge_spec",
    "input_wrong_type",
    "input_json_not_json",
    "responses_unknown_node",
    "output_xml",
    "unknown_command",
)


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory, seeded_template: Path
) -> dict[str, Outcome]:
    """The real `flowrun` command for a case per layer, two at a time (the work is CPU-bound)."""
    base = tmp_path_factory.mktemp("bad-input")

    def one(name: str) -> Outcome:
        inputs, cwd, db = _prepare(base / name, seeded_template)
        before, db_before = listing(cwd), table_counts(db)
        proc = run_flowrun(*CASES[name].argv(inputs), cwd=cwd, db=db, timeout=60)
        return Outcome(proc, before, listing(cwd), db_before, table_counts(db))

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(one, name) for name in IN_A_PROCESS}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", IN_A_PROCESS)
def test_bad_input_in_a_real_process(processes: dict[str, Outcome], name: str) -> None:
    _check(name, processes[name])


def test_good_files_next_to_the_bad_ones_do_run(tmp_path: Path, fresh_db: Path) -> None:
    """Control: the argument shapes above are right, so the failures come from the bad parts."""
    p = run_flowrun("validate", SPEC, "--profile", "ci", cwd=tmp_path, db=fresh_db)
    assert p.rc == 0, str(p)
    assert "ok — workflow 'support-refund'" in p.stdout


def test_a_fifo_is_refused_unread(tmp_path: Path) -> None:
    """A FIFO as the spec or the input would block the read forever: refused before opening."""
    import os

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    proc = run_flowrun("validate", fifo, cwd=tmp_path)
    assert proc.rc == 2 and "file-unreadable" in proc.stderr, str(proc)
    assert "not a regular file" in proc.stderr
    proc = run_flowrun("execute", SPEC, "--input", fifo, cwd=tmp_path)
    assert proc.rc == 2 and "--input: cannot read" in proc.stderr, str(proc)


def test_a_tool_module_that_exits_on_import_is_a_diagnostic(tmp_path: Path) -> None:
    """`sys.exit(0)` in a tool module must not end `validate` with exit 0 and no output."""
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(0)\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: t}\n"
        "tools:\n  t: {impl: 'exiting:f', effect: read}\n"
        "nodes:\n  a: {tool: t, args: {x: y}}\n",
        encoding="utf-8",
    )
    proc = run_flowrun("validate", spec, cwd=tmp_path)
    assert proc.rc == 2, str(proc)
    assert "unknown-impl" in proc.stderr and "sys.exit(0)" in proc.stderr, str(proc)


def test_a_spec_cannot_read_files_outside_its_project(tmp_path: Path) -> None:
    """A prompt_file, a Cedar file or a subflow that resolves outside the project folder (here
    through `..` and through a symlink) is refused at validate, and nothing of it is read."""
    import os

    secret = tmp_path / "secret.txt"
    secret.write_text("sk_live_do_not_read_me", encoding="utf-8")
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "pyproject.toml").write_text("", encoding="utf-8")
    os.symlink(secret, project / "specs" / "linked.txt")
    spec = project / "specs" / "s.yaml"
    spec.write_text(
        "apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: t}\n"
        "models: {small: openai/gpt-4o-mini}\n"
        "nodes:\n"
        "  a: {llm: small, prompt_file: ../../secret.txt, output: {type: object}}\n"
        "  b: {llm: small, prompt_file: linked.txt, output: {type: object}}\n"
        "  c: {flow: ../../secret.txt}\n",
        encoding="utf-8",
    )
    proc = run_flowrun("validate", spec, cwd=project)
    assert proc.rc == 2, str(proc)
    assert proc.stderr.count("file-outside-project") == 3, str(proc)
    assert "sk_live" not in proc.stderr + proc.stdout
    allowed = run_flowrun("validate", spec, cwd=project, env={"FLOWRUN_ALLOW_PATHS": str(tmp_path)})
    assert "file-outside-project" not in allowed.stderr, str(allowed)
