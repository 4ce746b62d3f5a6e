"""The spec language's JSON Schema, generated from the models (schema/flowrun-v1.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from runner.spec.models import Spec

SCHEMA_ID = "https://flowrun.dev/schema/flowrun-v1.schema.json"


def spec_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
