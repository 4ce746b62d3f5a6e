"""flowrun: run LLM-agent workflows written as YAML graphs inside an envelope enforced outside the model."""

__version__ = "0.1.0"
