"""A write tool (with a preview) for the workflow that test_serve.py serves over MCP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def file_note(text: str, label: str) -> dict[str, Any]:
    path = Path(os.environ.get("MCP_STOOLS_LOG", "filed.jsonl"))
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"text": text, "label": label}) + "\n")
    return {"filed": True, "label": label}


def plan_note(text: str, label: str) -> dict[str, Any]:
    return {"result": {"filed": False, "label": label}, "change": f"file {text!r} as {label}"}
