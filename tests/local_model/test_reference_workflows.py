"""Each reference workflow on the embedded model ends in an outcome it is built to reach.

A new user's first run is `--profile local` with the README's inputs: a small model may earn an
escalation or a denial from the envelope, never a failure. Wall times are printed in the
terminal summary (tests/local_model/conftest.py), as the issue's "under 60 s" is measured here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.local_model.conftest import REPO, WALL_TIMES, env_for, run_flowrun

pytestmark = pytest.mark.local_model

BUILT_FOR = {"succeeded": 0, "escalated": 3, "denied": 5, "waiting": 6}


@dataclass(frozen=True)
class Case:
    spec: str
    input: str
    db_env: str
    seed: str  # module run as `python -m SEED --db PATH --reset`
    scopes: str


CASES = (
    Case("support_refund", "refund_granted", "FLOWRUN_SUPPORT_DB", "tools.seed", "refunds:write"),
    Case("crm_hygiene", "crm_archive_only", "FLOWRUN_CRM_DB", "tools.crm.seed", "crm:write"),
    Case(
        "incident_triage",
        "incident_restart_auto",
        "FLOWRUN_ITOPS_DB",
        "tools.itops.seed",
        "itops:remediate",
    ),
    Case(
        "invoice_reconciliation",
        "recon_matched",
        "FLOWRUN_FINANCE_DB",
        "tools.finance.seed",
        "recon:post",
    ),
)


@pytest.mark.parametrize("case", CASES, ids=[c.spec for c in CASES])
def test_reference_workflow_ends_as_built_on_the_local_model(
    case: Case, gguf: Path, tmp_path: Path
) -> None:
    db = tmp_path / f"{case.spec}.db"
    env = {case.db_env: str(db), "FLOWRUN_STORE": str(tmp_path / "store.db")}
    seeded = subprocess.run(
        [sys.executable, "-m", case.seed, "--db", str(db), "--reset"],
        cwd=REPO,
        env=env_for(None, env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    spec = REPO / "specs" / f"{case.spec}.yaml"
    started = time.perf_counter()
    proc = run_flowrun(
        "execute",
        spec,
        "--profile",
        "local",
        "--scopes",
        case.scopes,
        "--input",
        REPO / "examples" / "inputs" / f"{case.input}.json",
        "--output",
        "json",
        env=env,
        timeout=900,
    )
    wall = time.perf_counter() - started
    result = json.loads(proc.stdout)
    assert "Traceback" not in proc.stderr, proc.stderr
    WALL_TIMES.append(f"{case.spec} ({case.input}): {result['status']} in {wall:.1f} s")
    assert result["status"] in BUILT_FOR, proc
    assert proc.rc == BUILT_FOR[result["status"]]
    outputs = {
        nid: node.get("output") for nid, node in yaml.safe_load(spec.read_text())["nodes"].items()
    }
    for nid, node in result["nodes"].items():
        if node["kind"] == "llm" and node["status"] == "succeeded":
            assert node["model"] == "local/gemma-3-270m"
            jsonschema.validate(node["output"], outputs[nid])
