"""Hard run budgets: reserve the worst case before a call, settle the real cost after."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.spec.models import Budget


class BudgetExceeded(Exception):
    """A call that could pass a cap was refused before it was made."""

    def __init__(self, cap: str, message: str) -> None:
        super().__init__(message)
        self.cap = cap
        self.message = message


@dataclass
class Reservation:
    usd: float = 0.0
    tokens: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    open: bool = True


@dataclass
class BudgetLedger:
    """Spent and reserved amounts of one run; single event loop, so no locks are needed."""

    caps: Budget
    spent_usd: float = 0.0
    spent_tokens: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    reserved: Reservation = field(default_factory=Reservation)

    def reserve_llm(self, *, usd: float, tokens: int, model: str) -> Reservation:
        c = self.caps
        if (
            c.max_llm_calls is not None
            and self.llm_calls + self.reserved.llm_calls + 1 > c.max_llm_calls
        ):
            raise BudgetExceeded(
                "max_llm_calls",
                f"max_llm_calls {c.max_llm_calls} reached; the call to {model} was not made",
            )
        if c.max_usd is not None and self.spent_usd + self.reserved.usd + usd > c.max_usd + 1e-12:
            left = max(c.max_usd - self.spent_usd - self.reserved.usd, 0.0)
            raise BudgetExceeded(
                "max_usd",
                f"a call to {model} could cost up to ${usd:.6f} but only ${left:.6f} of "
                f"max_usd ${c.max_usd:g} is left; the call was not made",
            )
        if (
            c.max_tokens is not None
            and self.spent_tokens + self.reserved.tokens + tokens > c.max_tokens
        ):
            left = max(c.max_tokens - self.spent_tokens - self.reserved.tokens, 0)
            raise BudgetExceeded(
                "max_tokens",
                f"a call to {model} could use up to {tokens} tokens but only {left} of "
                f"max_tokens {c.max_tokens} are left; the call was not made",
            )
        r = Reservation(usd=usd, tokens=tokens, llm_calls=1)
        self._add(r, 1)
        return r

    def settle_llm(self, r: Reservation, *, usd: float, tokens: int) -> None:
        if not r.open:
            return
        self._add(r, -1)
        r.open = False
        self.spent_usd += usd
        self.spent_tokens += tokens
        self.llm_calls += 1

    def release(self, r: Reservation) -> None:
        """Give a reservation back when the call failed before costing anything."""
        if r.open:
            self._add(r, -1)
            r.open = False

    def reserve_tool(self, tool: str) -> None:
        c = self.caps
        if c.max_tool_calls is not None and self.tool_calls + 1 > c.max_tool_calls:
            raise BudgetExceeded(
                "max_tool_calls",
                f"max_tool_calls {c.max_tool_calls} reached; {tool} was not called",
            )
        self.tool_calls += 1

    def _add(self, r: Reservation, sign: int) -> None:
        self.reserved.usd += sign * r.usd
        self.reserved.tokens += sign * r.tokens
        self.reserved.llm_calls += sign * r.llm_calls

    def remaining_usd(self) -> float | None:
        if self.caps.max_usd is None:
            return None
        return self.caps.max_usd - self.spent_usd - self.reserved.usd
