"""A command imports only what it uses: `--help` and `validate` stay clear of the run stack."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runner.cli import COMMANDS, cli
from tests.cli.conftest import REPO, SPEC, flowrun_env

# tenths of a second to seconds to import each, and none of them is needed to read a spec
HEAVY = (
    "litellm",
    "temporalio",
    "starlette",
    "uvicorn",
    "opentelemetry.exporter",
    "networkx",
    "rich",
)

_PROBE = """\
import json, sys
report = sys.argv.pop(1)
from runner.cli import main
try:
    main()
except SystemExit as e:
    rc = e.code
json.dump({"rc": rc, "modules": sorted(sys.modules)}, open(report, "w"))
"""


# the same, in a process that is a `flowrun` command (what started_as_flowrun() tells)
_FLOWRUN_PROBE = "import sys; sys.argv[0] = 'flowrun'\n" + _PROBE


def _modules_after(
    tmp_path: Path, *argv: str, probe: str = _PROBE, env: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    """Run `flowrun ARGV` in a fresh interpreter; return its exit code and sys.modules."""
    report = tmp_path / "modules.json"
    cp = subprocess.run(
        [sys.executable, "-c", probe, str(report), *argv],
        cwd=tmp_path,
        env=flowrun_env(None, env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), cp.stderr
    data = json.loads(report.read_text())
    return data["rc"], data["modules"]


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize(
    "argv", [("--help",), ("validate", str(SPEC)), ("validate", "--output", "json", str(SPEC))]
)
def test_help_and_validate_import_no_run_stack(tmp_path: Path, argv: tuple[str, ...]) -> None:
    rc, modules = _modules_after(tmp_path, *argv)
    assert rc in (0, None)
    assert _heavy(modules) == []


def test_help_imports_no_subcommand_module(tmp_path: Path) -> None:
    rc, modules = _modules_after(tmp_path, "--help")
    assert rc in (0, None)
    loaded = {target.partition(":")[0] for target, _ in COMMANDS.values()} & set(modules)
    assert loaded == set()
    assert "runner.plan.compile" not in modules


def test_help_lists_every_command_from_the_table() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    listed = out.split("Commands:")[1]
    for name, (_, short) in COMMANDS.items():
        assert f"  {name} " in listed
        assert short.split()[0] in listed
    for name in ("execute", "validate", "schema"):
        assert f"  {name} " in listed


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_entry_names_its_command(name: str) -> None:
    """Each entry points at a click command of that name, with a one-sentence short help."""
    target, short = COMMANDS[name]
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert short.endswith(".") and len(short) <= 60


def test_lazy_command_runs_and_shows_its_help() -> None:
    result = CliRunner().invoke(cli, ["runs", "--help"])
    assert result.exit_code == 0, result.output
    assert "--limit" in result.output


def test_validate_reads_no_package_metadata(tmp_path: Path) -> None:
    """pydantic's plugin discovery imports importlib.metadata (~20 ms): with no plugin
    installed, a `flowrun` process builds its validators without it."""
    rc, modules = _modules_after(tmp_path, "validate", str(SPEC), probe=_FLOWRUN_PROBE)
    assert rc in (0, None)
    assert "pydantic.main" in modules  # the spec was validated by pydantic models
    assert "importlib.metadata" not in modules


_PLUGIN = """\
import os
from pathlib import Path

class _Plugin:
    def new_schema_validator(self, schema, schema_type, path, kind, config, settings):
        with Path(os.environ["PLUGIN_LOG"]).open("a") as f:
            f.write(f"{schema_type.__name__}\\n")
        return None, None, None

plugin = _Plugin()
"""


def test_an_installed_pydantic_plugin_is_still_loaded(tmp_path: Path) -> None:
    """A distribution that declares a `pydantic` entry point: pydantic's own loader runs and
    the plugin sees every validator flowrun builds, as without the shortcut."""
    site = tmp_path / "site"
    dist = site / "recorder_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nrecorder = recorder_plugin:plugin\n")
    (site / "recorder_plugin.py").write_text(_PLUGIN)
    log = tmp_path / "plugin.log"
    env = {"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "PLUGIN_LOG": str(log)}
    rc, modules = _modules_after(tmp_path, "validate", str(SPEC), probe=_FLOWRUN_PROBE, env=env)
    assert rc in (0, None)
    assert "recorder_plugin" in modules
    assert "Spec" in log.read_text().split()
