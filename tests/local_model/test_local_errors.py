"""Bad input around local models: a missing extra and an unknown name give a message with a fix.

These run without flowrun[local]: the missing extra is simulated by hiding `llama_cpp` from the
import system of the real CLI process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.local_model.conftest import run_flowrun
from tests.local_model.specs import TICKET, write_triage

# the real CLI entry point, with `import llama_cpp` failing as it does when the extra is absent
WITHOUT_LLAMA_CPP = (
    sys.executable,
    "-c",
    "import sys; sys.modules['llama_cpp'] = None; sys.argv[0] = 'flowrun'; "
    "from runner.cli import main; main()",
)


def test_missing_extra_names_the_extra(tmp_path: Path) -> None:
    spec = write_triage(tmp_path, "{model: local/gemma-3-270m, temperature: 0, max_tokens: 64}")
    proc = run_flowrun(
        "execute",
        spec,
        "--input-json",
        json.dumps({"text": TICKET}),
        "--output",
        "json",
        argv0=WITHOUT_LLAMA_CPP,
        env={"FLOWRUN_MODEL_DIR": str(tmp_path / "models")},
    )
    # refused before the run starts, as invalid input: nothing is recorded or assembled
    assert proc.rc == 2, proc
    assert proc.stdout == ""
    assert "llama-cpp-python, which is not installed" in proc.stderr
    assert "pip install 'flowrun[local]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "models").exists()  # nothing was assembled for a model that cannot run


def test_unknown_local_model_lists_the_known_ones(tmp_path: Path) -> None:
    spec = write_triage(tmp_path, "{model: local/gemma-9, temperature: 0, max_tokens: 64}")
    proc = run_flowrun("execute", spec, "--input-json", json.dumps({"text": TICKET}))
    assert proc.rc == 1, proc
    assert "unknown local model local/gemma-9; available: local/gemma-3-270m" in proc.stdout
    assert "Traceback" not in proc.stderr
