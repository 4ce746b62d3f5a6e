"""Observability: OpenTelemetry spans, redacted transcripts, `trace`, `stats` and `replay`."""
