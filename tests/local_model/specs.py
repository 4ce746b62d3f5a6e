"""A one-node triage spec, written per test so that its model route can name a live port."""

from __future__ import annotations

from pathlib import Path

TRIAGE = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: local-triage, owner: tests}}
inputs:
  type: object
  properties: {{text: {{type: string}}}}
  required: [text]
models:
  small: {model}
budget: {{max_usd: 0.01, max_tokens: 4000, max_llm_calls: 3}}
nodes:
  classify:
    llm: small
    system: You triage customer support tickets for an online shop.
    prompt: |
      Classify the ticket into refund, shipping, account or other; say how confident you are.
      {{{{ inputs.text | data("ticket") }}}}
    output:
      type: object
      properties:
        category: {{enum: [refund, shipping, account, other]}}
        confidence: {{enum: [low, medium, high]}}  # a grammar encodes enums, not bounds
      required: [category, confidence]
      additionalProperties: false
outputs:
  category: "${{{{ nodes.classify.output.category }}}}"
"""

TICKET = "My parcel was supposed to arrive last Monday and the tracking page has not moved since."


def write_triage(directory: Path, model: str) -> Path:
    """The triage spec with `models.small` set to `model` (a YAML flow value)."""
    path = directory / "triage.yaml"
    path.write_text(TRIAGE.format(model=model), encoding="utf-8")
    return path
