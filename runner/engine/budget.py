"""Hard run budgets: reserve the worst case before a call, settle the real cost after.

Model calls (the rule, both backends; runner/engine/wrappers.py ModelBudget applies it):
- a call is reserved at the highest price it can be billed at: its prompt tokens plus the
  node's max_tokens, priced at the costliest model of the route (the model and every fallback),
  from litellm's bundled price map;
- the reservation is checked against this process's ledger (below: the run's caps and a
  subflow's own) and then, atomically, against every spend row of the run in the store
  (`Services.spend_reserve`), where it is committed before the call is made: what a crashed
  process or another worker reserved or spent is counted, so a resumed or retried run never
  passes its cap;
- after the call the row is settled at what the provider billed (litellm's cost of the answer,
  priced by the model that answered); a call cut off in flight (a kill, a timeout, a failed
  sibling) or one that may have reached the provider keeps its whole reservation as spent;
  only a call known not to have been billed (refused by the provider) is released;
- a row left open by a crash counts at its reservation.
A run's and a top-level node's model usage are what their rows count (`tally`), so the record
after a crash and resume counts every call made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.engine.results import Usage
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
    # model usage per top-level node, call by call in the order reserved, as its spend rows
    # count it: earlier executions' rows (a crash, an approval) and this process's calls. A
    # node's usage is their sum in that order, the same sum `billed_by_node` makes of the rows
    # in the store, so every process reports the same figures
    tally: dict[str, dict[Any, Usage]] = field(default_factory=dict)
    earlier: list[Mapping[str, Any]] = field(default_factory=list)  # those rows, counted

    # ledger keys of the tool calls this process counted: a replay of any other call of this
    # run (made by an execution a crash cut off) is counted when it is replayed
    counted_tools: set[str] = field(default_factory=set)

    def root(self) -> BudgetLedger:
        """The run's own ledger (a subflow's charges its parent's)."""
        return self

    def count_tool(self) -> None:
        """A tool call already made (replayed from the idempotency ledger): counted, never
        refused."""
        self.tool_calls += 1

    def count_earlier(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add the spend rows made before this process started (`Services.spend_rows`, in
        order) to the tally."""
        for i, row in enumerate(rows):
            if row["status"] != "released":
                calls = self.tally.setdefault(row["node_id"], {})
                calls[("earlier", i)] = usage_of(row)
                self.earlier.append(row)

    def earlier_under(self, prefix: str) -> Usage:
        """What earlier executions' calls made under `prefix` (a subflow's `at`, such as
        `sub/` or `each[3]/`) count: a subflow run again after a crash starts its own caps
        from them."""
        return sum_usage(usage_of(r) for r in self.earlier if str(r["at"]).startswith(prefix))

    def node_usage(self, node_id: str) -> Usage | None:
        """What a top-level node's spend rows count (None: it has none)."""
        calls = self.tally.get(node_id)
        return None if calls is None else sum_usage(calls.values())

    def node_usages(self) -> dict[str, Usage]:
        return {n: sum_usage(calls.values()) for n, calls in self.tally.items()}

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


def usage_of(row: Mapping[str, Any]) -> Usage:
    """The usage one spend row (`Services.spend_rows`) counts: a model call's, or a billed tool
    call's dollars (its call is counted by the idempotency ledger, not here)."""
    if row.get("kind", "llm") == "tool":
        usd = float(row["usd"])
        return Usage(cost_usd=usd, tool_cost_usd=usd)
    return Usage(
        llm_calls=1,
        input_tokens=int(row["input_tokens"]),
        output_tokens=int(row["output_tokens"]),
        cost_usd=float(row["usd"]),
    )


def sum_usage(usages: Iterable[Usage]) -> Usage:
    """Usages added up in the order given."""
    total = Usage()
    for u in usages:
        total += u
    return total


def billed_by_node(rows: Iterable[Mapping[str, Any]]) -> dict[str, Usage]:
    """What a run's spend rows (`Services.spend_rows`, in order) count per top-level node."""
    by_node: dict[str, list[Usage]] = {}
    for row in rows:
        if row["status"] != "released":
            by_node.setdefault(row["node_id"], []).append(usage_of(row))
    return {n: sum_usage(us) for n, us in by_node.items()}


def with_model_usage(usage: Usage, billed: Usage | None) -> Usage:
    """`usage` with its billed part (model calls, tokens, model and tool dollars) replaced by
    what the spend rows count."""
    if billed is None:
        return usage
    return Usage(
        llm_calls=billed.llm_calls,
        tool_calls=usage.tool_calls,
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        cost_usd=billed.cost_usd,
        tool_cost_usd=billed.tool_cost_usd,
    )


def run_usage(results: Mapping[str, Any], tally: Mapping[str, Usage]) -> Usage:
    """A run's totals: each node's usage (`results`: node id -> NodeResult), its model part as
    its spend rows count it; nodes with spend rows and no result (cut off by a kill or
    max_seconds) count too."""
    total = Usage()
    for nid, res in results.items():
        total += with_model_usage(res.usage, tally.get(nid))
    for nid, billed in tally.items():
        if nid not in results:
            total += billed
    return total
