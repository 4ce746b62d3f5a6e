"""flowrun: LLM-agent workflows as YAML graphs, inside an envelope enforced outside the model."""

__version__ = "0.1.0"
