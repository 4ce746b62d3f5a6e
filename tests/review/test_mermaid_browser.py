"""Every mermaid graph flowrun emits renders in a real browser (mermaid@11 in headless Chromium)."""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.diff import diff_pair, load_file_side
from runner.diff.render import to_markdown
from runner.graph import from_plan, to_mermaid
from runner.plan.compile import compile_plan
from runner.spec import load_spec
from tests.review.conftest import PAIRS, REFERENCE

BROWSER = Path(__file__).resolve().parent / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROKEN = 'flowchart TD\n  a["unclosed --> b\n'  # proves the page reports parse errors


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (run tests/review/browser/setup.sh)"
    if not (BROWSER / "node_modules" / "mermaid" / "dist" / "mermaid.esm.min.mjs").exists():
        return (
            "mermaid is not installed in tests/review/browser (run tests/review/browser/setup.sh)"
        )
    return None


def _cases() -> list[dict[str, str]]:
    """The reference graph under each profile, and the diff graph of every pair."""
    out = []
    loaded = load_spec(REFERENCE)
    for profile in [None, *loaded.spec.profiles]:
        out.append(
            {
                "name": f"graph:{profile}",
                "text": to_mermaid(from_plan(compile_plan(loaded, profile))),
            }
        )
    for extra in ("support_faq.yaml", "support_batch.yaml"):  # subflow and loop subgraphs
        plan = compile_plan(load_spec(REFERENCE.parent / extra))
        out.append({"name": f"graph:{extra}", "text": to_mermaid(from_plan(plan))})
    for pair in sorted(p for p in PAIRS.iterdir() if p.is_dir()):
        base, head = (
            load_file_side(str(pair / "base.yaml")),
            load_file_side(str(pair / "head.yaml")),
        )
        md = to_markdown(base, head, diff_pair(base, head))
        blocks = re.findall(r"```mermaid\n(.*?)```", md, flags=re.S)
        assert len(blocks) == 1, pair.name
        out.append({"name": f"diff:{pair.name}", "text": blocks[0]})
    out.append({"name": "broken", "text": BROKEN})
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[int]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_every_emitted_mermaid_renders(tmp_path: Path) -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and the browser test cannot run: {reason}")
        pytest.skip(reason)
    site = tmp_path / "site"
    site.mkdir()
    (site / "node_modules").symlink_to(BROWSER / "node_modules", target_is_directory=True)
    shutil.copy(BROWSER / "index.html", site / "index.html")
    cases = _cases()
    (site / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    with _serve(site) as port:
        proc = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=30000", "--dump-dom", f"http://127.0.0.1:{port}/index.html",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    m = re.search(r"RESULT:(.*?):END", html.unescape(proc.stdout), flags=re.S)
    assert m, (
        f"page did not report (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-2000:]}"
    )
    results = {r["name"]: r for r in json.loads(m.group(1))}
    assert set(results) == {c["name"] for c in cases}
    assert not results["broken"]["ok"] and results["broken"]["error"], (
        "the page did not catch a parse error"
    )
    failed = {n: r.get("error") for n, r in results.items() if n != "broken" and not r["ok"]}
    assert not failed, failed
    assert results["graph:None"]["nodes"] == 10  # every node of the reference spec was drawn
