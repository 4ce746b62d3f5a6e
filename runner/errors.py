"""Errors grouped by who must act, each carrying its exit code; diagnostics in one shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; one per run outcome, plus usage and internal errors (see README)."""

    SUCCEEDED = 0
    FAILED = 1
    INVALID = 2  # bad spec, bad CLI argument, bad input file, unknown run id: nothing was run
    ESCALATED = 3
    BUDGET_EXCEEDED = 4
    DENIED = 5
    WAITING = 6
    KILLED = 7
    INTERNAL = 70  # a bug in flowrun; the message asks for a report


@dataclass(frozen=True, order=True, kw_only=True)
class Diagnostic:
    """One problem found in a file, printed `path:line:col: rule: message` (1-based)."""

    file: str
    line: int
    col: int
    rule: str
    message: str
    hint: str | None = field(default=None, compare=False)
    severity: str = field(default="error", compare=False)

    def render(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.rule}: {self.message}"
        if self.severity != "error":
            where = f"{self.file}:{self.line}:{self.col}"
            text = f"{where}: {self.severity}: {self.rule}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class FlowrunError(Exception):
    """Base of every error flowrun shows to a user; never shown as a traceback."""

    exit_code: int = ExitCode.INTERNAL

    def __init__(
        self, message: str, *, hint: str | None = None, identities: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # who acted (an approver, a run's actor) named in the message: shown as is, not
        # redacted like the values a message may quote
        self.identities = tuple(i for i in identities if i)

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(FlowrunError):
    """A bad CLI argument or input file: the caller must change the command."""

    exit_code = ExitCode.INVALID


class SpecError(FlowrunError):
    """A spec that cannot be loaded or compiled; holds every diagnostic found."""

    exit_code = ExitCode.INVALID

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = sorted(diagnostics)
        n = len(self.diagnostics)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found")

    def render(self) -> str:
        lines = [d.render() for d in self.diagnostics]
        lines.append(f"{self.message}")
        return "\n".join(lines)


class RunError(FlowrunError):
    """A run that could not start or continue for a reason outside the spec."""

    exit_code = ExitCode.FAILED


def errors_only(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]
