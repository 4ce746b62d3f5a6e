"""The attacks reuse the envelope's tools (tests/envelope/etools.py) and its log fixture."""

from tests.envelope.conftest import etools_log

__all__ = ["etools_log"]
