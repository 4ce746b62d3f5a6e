"""Readiness: five gates that say, from recorded evidence, whether a workflow may act on its own.

Each gate reads what flowrun already records (eval results kept with `flowrun eval --record`,
run rows, policy decisions, call records, approvals, undo) through the store interface and
ends `pass`, `fail` or `not_enough_evidence`, with the numbers behind it and, when it fails,
the remedy. The thresholds are the spec's `readiness:` block (runner/spec/models.py). The
entry points (`flowrun readiness`, `flowrun autonomy promote`, the console) only render this.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from runner.plan.model import Plan
    from runner.spec.models import Readiness
    from runner.store import Store

Status = Literal["pass", "fail", "not_enough_evidence"]
GATES = ("task_success", "cost_control", "safety", "observability", "human_fallback")
TITLES = {
    "task_success": "task success",
    "cost_control": "cost control",
    "safety": "safety & permissions",
    "observability": "observability",
    "human_fallback": "human fallback",
}
Z95 = 1.959963984540054


def wilson_lower(passes: int, n: int, z: float = Z95) -> float:
    """Lower bound of the 95% Wilson score interval of passes/n (0.0 when n is 0)."""
    if n <= 0 or passes <= 0:
        return 0.0
    p = passes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def nearest_rank(values: list[float], p: float) -> float | None:
    """The p-th percentile by nearest rank: a value that really occurred (as `flowrun stats`)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p * len(s) / 100) - 1))
    return s[k]


@dataclass
class Check:
    """One measurement of a gate against its threshold; `ok` None: nothing to measure."""

    name: str
    value: Any
    threshold: Any
    ok: bool | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Gate:
    name: str
    status: Status = "pass"
    checks: list[Check] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    remedy: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # why the evidence is not enough

    @property
    def title(self) -> str:
        return TITLES[self.name]

    def check(self, name: str, value: Any, threshold: Any, ok: bool | None, text: str) -> None:
        self.checks.append(Check(name, value, threshold, ok, text))

    def decide(self) -> None:
        if any(c.ok is False for c in self.checks):
            self.status = "fail"
        elif self.missing:
            self.status = "not_enough_evidence"
        else:
            self.status = "pass"
        if self.status == "pass":
            self.remedy = []

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.name,
            "title": self.title,
            "status": self.status,
            "numbers": self.numbers,
            "checks": [c.to_json() for c in self.checks],
            "missing": self.missing,
            "remedy": self.remedy,
        }


@dataclass
class Report:
    workflow: str
    spec_path: str
    tenant: str | None
    since: float
    now: float
    gates: list[Gate]
    autonomy: list[dict[str, Any]] = field(default_factory=list)
    shadow: dict[str, Any] | None = None  # the latest `flowrun shadow --record` of this version

    @property
    def passed(self) -> bool:
        return all(g.status == "pass" for g in self.gates)

    @property
    def status(self) -> Status:
        if any(g.status == "fail" for g in self.gates):
            return "fail"
        if any(g.status == "not_enough_evidence" for g in self.gates):
            return "not_enough_evidence"
        return "pass"

    def gate(self, name: str) -> Gate:
        return next(g for g in self.gates if g.name == name)

    def failing(self) -> list[str]:
        return [g.name for g in self.gates if g.status != "pass"]

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "spec": self.spec_path,
            "tenant": self.tenant,
            "since": self.since,
            "now": self.now,
            "status": self.status,
            "passed": self.passed,
            "gates": [g.to_json() for g in self.gates],
            "autonomy": self.autonomy,
            "shadow": self.shadow,
        }


@dataclass(frozen=True)
class PolicyCases:
    """What the spec's policy unit cases (`readiness.safety.policy_cases`) gave just now."""

    path: str
    passed: int
    failed: list[str]


def spec_digest(plan: Plan) -> str:
    """The digest runs and eval results record for a spec version (its text's SHA-256)."""
    return hashlib.sha256(plan.loaded.source.text.encode()).hexdigest()


def eval_summary(report: Any) -> dict[str, Any]:
    """What `flowrun eval --record` keeps of an eval report (runner/evals/suite.py Report)."""
    by_kind: dict[str, list[int]] = {}
    for c in report.cases:
        k = by_kind.setdefault(c.kind, [0, 0])
        k[0] += int(c.passed)
        k[1] += 1
    runs = len(report.runs)
    return {
        "cases": len(report.cases),
        "case_passes": sum(int(c.passed) for c in report.cases),
        "runs": runs,
        "run_passes": sum(int(r.passed) for r in report.runs),
        "by_kind": by_kind,
        "policy_violations": int(report.metrics.get("policy_violations") or 0),
        "gates_failed": [g.name for g in report.gates if not g.passed],
        "repeat": report.repeat,
        "profile": report.profile,
    }


def record_eval(store: Store, plan: Plan, report: Any) -> int:
    """Keep an eval report's figures in the store, as evidence for the task-success and safety
    gates."""
    return store.eval_record(
        plan.name, spec_digest=spec_digest(plan), passed=report.passed, summary=eval_summary(report)
    )


def assess(
    store: Store,
    plan: Plan,
    *,
    tenant: str | None = None,
    since: float | None = None,
    now: float | None = None,
    policy_cases: PolicyCases | None = None,
) -> Report:
    """The five gates of `plan`'s workflow over the runs created since `since` (default: the
    spec's `readiness.window` ago)."""
    now = time.time() if now is None else now
    cfg = plan.loaded.spec.readiness
    since = now - cfg.window if since is None else since
    wf = plan.name
    evals = store.eval_results(wf, limit=max(cfg.task_success.stability_runs, 1))
    digest = spec_digest(plan)
    runs = store.window_runs(wf, tenant=tenant, since=since)
    writes = store.window_writes(wf, tenant=tenant, since=since)
    gates = [
        _task_success(cfg, evals, digest),
        _cost(cfg, plan, runs),
        _safety(
            cfg,
            plan,
            evals,
            store.window_events(wf, ["policy_decision"], tenant=tenant, since=since),
            policy_cases,
        ),
        _observability(
            cfg, writes, store.window_calls(wf, kind="tool", tenant=tenant, since=since)
        ),
        _human_fallback(cfg, store.window_approvals(wf, tenant=tenant, since=since), writes, now),
    ]
    if not write_tools(plan):  # nothing to trace before a write, nothing to undo
        for g in gates[3:]:
            if g.missing:
                g.missing, g.remedy = [], []
                g.check("writes", 0, None, None, "the workflow declares no write tool")
    for g in gates:
        g.decide()
    return Report(
        workflow=wf,
        spec_path=str(plan.loaded.source.path),
        tenant=tenant,
        since=since,
        now=now,
        gates=gates,
        autonomy=autonomy_levels(store, plan, tenant),
        shadow=_shadow(store, plan),
    )


def _shadow(store: Store, plan: Plan) -> dict[str, Any] | None:
    """The latest `flowrun shadow --record` of this very spec version (None: none)."""
    digest = spec_digest(plan)
    found = [
        e
        for e in store.events(run_id="*", type_="shadow_result")
        if e["data"].get("workflow") == plan.name and e["data"].get("spec_digest") == digest
    ]
    return {"ts": found[-1]["ts"], **found[-1]["data"]} if found else None


def write_tools(plan: Plan) -> list[str]:
    return sorted(n for n, t in plan.loaded.spec.tools.items() if t.effect == "write")


def autonomy_levels(store: Store, plan: Plan, tenant: str | None) -> list[dict[str, Any]]:
    """The level governing each write tool of the workflow (for `tenant`, or every tenant)."""
    out = []
    for tool in write_tools(plan):
        row = store.autonomy_level(plan.name, tool, tenant)
        out.append(
            {
                "tool": tool,
                "level": row["level"] if row else "autonomous",
                "recorded": row is not None,
                "tenant": (row["tenant"] or None) if row else None,
                "changed_by": row["changed_by"] if row else None,
                "changed_at": row["changed_at"] if row else None,
                "reason": row["reason"] if row else None,
            }
        )
    return out


# -- the gates ----------------------------------------------------------------------------------


def _rate(summary: dict[str, Any]) -> float:
    n = int(summary.get("runs") or 0)
    return int(summary.get("run_passes") or 0) / n if n else 0.0


def _task_success(cfg: Readiness, evals: list[dict[str, Any]], digest: str) -> Gate:
    t = cfg.task_success
    g = Gate("task_success")
    if not evals:
        g.missing.append("no eval result is recorded for this workflow")
        g.remedy.append("run `flowrun eval SPEC --cases DIR --record` (docs/evals.md)")
        return g
    latest = evals[0]
    s = latest["summary"]
    cases, runs = int(s.get("cases") or 0), int(s.get("runs") or 0)
    passes = int(s.get("run_passes") or 0)
    lower = wilson_lower(passes, runs)
    rates = [round(_rate(e["summary"]), 4) for e in evals[: t.stability_runs]]
    spread = round(max(rates) - min(rates), 4) if rates else 0.0
    g.numbers = {
        "eval_id": latest["id"],
        "recorded_at": latest["created_at"],
        "cases": cases,
        "runs": runs,
        "passes": passes,
        "success_rate": round(passes / runs, 4) if runs else None,
        "wilson_lower": round(lower, 4),
        "last_rates": rates,
        "spread": spread,
        "same_spec": latest.get("spec_digest") == digest,
    }
    if latest.get("spec_digest") != digest:
        g.missing.append("the latest eval result was recorded for another version of the spec")
        g.remedy.append("record an eval of this version: `flowrun eval SPEC --cases DIR --record`")
    if cases < t.min_cases:
        g.missing.append(f"the latest eval has {cases} cases; {t.min_cases} are needed")
        g.remedy.append(f"add eval cases until there are at least {t.min_cases}")
    ok = lower >= t.min_success
    g.check(
        "wilson_lower",
        round(lower, 4),
        t.min_success,
        ok,
        f"{passes}/{runs} runs passed; 95% Wilson lower bound {lower:.3f} "
        f"{'>=' if ok else '<'} {t.min_success:g}",
    )
    if not ok:
        g.remedy.append(
            "fix the failing cases (`flowrun eval` lists them), or run more repeats "
            "(`--repeat K`) when the sample is too small to prove the rate"
        )
    if len(rates) < t.stability_runs:
        g.missing.append(
            f"{len(rates)} eval result(s) recorded; stability needs the last {t.stability_runs}"
        )
        g.remedy.append("record more eval results (e.g. one per merge or per night)")
        g.check("spread", spread, t.max_spread, None, f"spread {spread:.3f} over {len(rates)}")
    else:
        sok = spread <= t.max_spread
        g.check(
            "spread",
            spread,
            t.max_spread,
            sok,
            f"success over the last {len(rates)} evals {', '.join(f'{r:.3f}' for r in rates)}: "
            f"spread {spread:.3f} {'<=' if sok else '>'} {t.max_spread:g}",
        )
        if not sok:
            g.remedy.append(
                "make results stable before trusting them: pin temperature 0, tighten output "
                "schemas and gates, and find the cases that flip between evals"
            )
    return g


def _cost(cfg: Readiness, plan: Plan, runs: list[dict[str, Any]]) -> Gate:
    c = cfg.cost
    g = Gate("cost_control")
    budget = plan.loaded.spec.budget.max_usd
    max_p95 = c.max_p95_usd if c.max_p95_usd is not None else budget
    max_one = c.max_usd if c.max_usd is not None else budget
    costs = [float(r["cost_usd"] or 0.0) for r in runs if r["status"] == "succeeded"]
    p95, top = nearest_rank(costs, 95), (max(costs) if costs else None)
    g.numbers = {
        "completed_runs": len(costs),
        "runs": len(runs),
        "p95_usd": None if p95 is None else round(p95, 8),
        "max_usd": None if top is None else round(top, 8),
        "mean_usd": round(sum(costs) / len(costs), 8) if costs else None,
        "budget_usd": budget,
    }
    if max_p95 is None and max_one is None:
        g.check(
            "budget",
            None,
            None,
            False,
            "no cost threshold: neither budget.max_usd nor readiness.cost sets one",
        )
        g.remedy.append("declare `budget.max_usd` (or `readiness.cost.max_p95_usd`) in the spec")
        return g
    if len(costs) < c.min_runs:
        g.missing.append(f"{len(costs)} completed run(s) in the window; {c.min_runs} are needed")
        g.remedy.append("run the workflow (dry run or live) on more real tasks")
    if p95 is not None and max_p95 is not None:
        ok = p95 <= max_p95 + 1e-12
        g.check(
            "p95_usd",
            round(p95, 8),
            max_p95,
            ok,
            f"p95 cost per completed task ${p95:.6f} {'<=' if ok else '>'} ${max_p95:g}",
        )
    if top is not None and max_one is not None:
        ok = top <= max_one + 1e-12
        g.check(
            "max_usd",
            round(top, 8),
            max_one,
            ok,
            f"most expensive completed task ${top:.6f} {'<=' if ok else '>'} ${max_one:g}",
        )
    if any(ch.ok is False for ch in g.checks):
        g.remedy.append(
            "find the expensive runs (`flowrun runs`, `flowrun trace RUN`): retries, fallbacks "
            "and long prompts; use a smaller model route or lower max_tokens"
        )
    return g


def _safety(
    cfg: Readiness,
    plan: Plan,
    evals: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    policy_cases: PolicyCases | None,
) -> Gate:
    s = cfg.safety
    g = Gate("safety")
    writes = set(write_tools(plan))
    mine = [
        e["data"]
        for e in decisions
        if e["data"].get("tool") in writes and not e["data"].get("workflow")
    ]
    denied = [d for d in mine if d.get("effect") == "deny"]
    rules: dict[str, int] = {}
    for d in denied:
        rules[str(d.get("rule"))] = rules.get(str(d.get("rule")), 0) + 1
    g.numbers = {
        "write_decisions": len(mine),
        "write_denials": len(denied),
        "deny_rate": round(len(denied) / len(mine), 4) if mine else None,
        "denials_by_rule": dict(sorted(rules.items())),
    }
    if policy_cases is not None:
        total = policy_cases.passed + len(policy_cases.failed)
        ok = not policy_cases.failed
        g.numbers["policy_cases"] = {"passed": policy_cases.passed, "failed": policy_cases.failed}
        g.check(
            "policy_cases",
            f"{policy_cases.passed}/{total}",
            "all",
            ok,
            f"policy unit cases {policy_cases.passed}/{total} pass"
            + ("" if ok else f" (failing: {', '.join(policy_cases.failed)})"),
        )
        if not ok:
            g.remedy.append(
                f"fix the policies or the cases: `flowrun policy test SPEC --cases "
                f"{policy_cases.path}`"
            )
    latest = evals[0]["summary"] if evals else None
    adv = (latest or {}).get("by_kind", {}).get("adversarial") if latest else None
    if adv is None or adv[1] < s.min_adversarial_cases:
        n = 0 if adv is None else adv[1]
        g.missing.append(
            f"the latest eval result holds {n} adversarial case(s); "
            f"{s.min_adversarial_cases} needed"
        )
        g.remedy.append("add adversarial (red-team) eval cases and record an eval (`--record`)")
    else:
        ok = adv[0] == adv[1]
        g.numbers["adversarial"] = {"passed": adv[0], "cases": adv[1]}
        g.check(
            "adversarial",
            f"{adv[0]}/{adv[1]}",
            "all",
            ok,
            f"adversarial eval cases {adv[0]}/{adv[1]} held",
        )
        if not ok:
            g.remedy.append(
                "the envelope let an attack through: fix the policies or gates the "
                "failing adversarial cases name"
            )
    if latest is not None:
        v = int(latest.get("policy_violations") or 0)
        ok = v <= s.max_policy_violations
        g.numbers["policy_violations"] = v
        g.check(
            "policy_violations",
            v,
            s.max_policy_violations,
            ok,
            f"forbidden writes in the latest eval {v} {'<=' if ok else '>'} "
            f"{s.max_policy_violations}",
        )
        if not ok:
            g.remedy.append("a forbidden write happened in the eval: add a policy or gate for it")
    if mine:
        rate = len(denied) / len(mine)
        ok = rate <= s.max_deny_rate
        g.check(
            "deny_rate",
            round(rate, 4),
            s.max_deny_rate,
            ok,
            f"{len(denied)}/{len(mine)} write-tool policy decisions denied ({rate:.1%}) "
            f"{'<=' if ok else '>'} {s.max_deny_rate:.0%}",
        )
        if not ok:
            top = max(rules.items(), key=lambda kv: kv[1])[0] if rules else "?"
            g.remedy.append(
                f"the workflow keeps proposing writes policy refuses (most by {top!r}): fix the "
                "prompt or add a gate before the write"
            )
    return g


def _observability(
    cfg: Readiness, writes: list[dict[str, Any]], calls: list[dict[str, Any]]
) -> Gate:
    o = cfg.observability
    g = Gate("observability")
    made: dict[tuple[str, str, str], int] = {}
    for w in writes:
        if w["status"] in ("done", "failed", "intent"):
            k = (w["run_id"], w["node_id"], w["tool"])
            made[k] = made.get(k, 0) + 1
    traced: dict[tuple[str, str, str], int] = {}
    for c in calls:
        if c.get("trace_id"):
            k = (c["run_id"], c["node_id"], c["name"])
            traced[k] = traced.get(k, 0) + 1
    total = sum(made.values())
    covered = sum(min(n, traced.get(k, 0)) for k, n in made.items())
    untraced = sorted({k[0] for k, n in made.items() if traced.get(k, 0) < n})
    g.numbers = {
        "writes": total,
        "traced": covered,
        "coverage": round(covered / total, 4) if total else None,
        "untraced_runs": untraced[:10],
    }
    if total < o.min_writes:
        g.missing.append(f"{total} live write(s) in the window; {o.min_writes} needed")
        g.remedy.append("run the workflow live (at autonomy level `approval`) to gather evidence")
        return g
    cov = covered / total
    ok = cov >= o.min_trace_coverage - 1e-12
    g.check(
        "trace_coverage",
        round(cov, 4),
        o.min_trace_coverage,
        ok,
        f"{covered}/{total} writes have a traced call record ({cov:.1%})",
    )
    if not ok:
        g.remedy.append(
            "writes ran without a trace (runs " + ", ".join(untraced[:5]) + "): run through "
            "`flowrun execute`/`runs/` so the observer records every call, and keep "
            "--capture off out of production"
        )
    return g


def _human_fallback(
    cfg: Readiness, approvals: list[dict[str, Any]], writes: list[dict[str, Any]], now: float
) -> Gate:
    h = cfg.human_fallback
    g = Gate("human_fallback")
    waits = [
        float(a["decided_at"]) - float(a["requested_at"])
        for a in approvals
        if a["status"] != "waiting" and a["decided_at"] is not None
    ]
    waiting = [a for a in approvals if a["status"] == "waiting"]
    overdue = [a for a in waiting if now - float(a["requested_at"]) > h.approval_sla]
    p95 = nearest_rank(waits, 95)
    done = [w for w in writes if w["status"] == "done"]
    undone = [w for w in done if w["undone"]]
    g.numbers = {
        "approvals": len(approvals),
        "decided": len(waits),
        "wait_p95_s": None if p95 is None else round(p95, 3),
        "wait_max_s": round(max(waits), 3) if waits else None,
        "sla_s": h.approval_sla,
        "waiting": len(waiting),
        "overdue": len(overdue),
        "live_writes": len(done),
        "undone": len(undone),
        "undo_rate": round(len(undone) / len(done), 4) if done else None,
    }
    if not approvals and not done:
        g.missing.append("no approval and no live write in the window")
        g.remedy.append("run the workflow at autonomy level `approval` so people review writes")
        return g
    if p95 is not None:
        ok = p95 <= h.approval_sla
        g.check(
            "wait_p95_s",
            round(p95, 3),
            h.approval_sla,
            ok,
            f"approval wait p95 {_dur(p95)} {'<=' if ok else '>'} SLA {_dur(h.approval_sla)}",
        )
        if not ok:
            g.remedy.append(
                "approvals wait too long: add assignees, set an approval `timeout` with "
                "on_timeout, or staff the inbox (`flowrun inbox`)"
            )
    ok = len(overdue) <= h.max_overdue
    g.check(
        "overdue",
        len(overdue),
        h.max_overdue,
        ok,
        f"{len(overdue)} approval(s) still waiting past the SLA",
    )
    if not ok:
        g.remedy.append("decide the approvals left waiting (`flowrun inbox`, `flowrun approve`)")
    if done:
        rate = len(undone) / len(done)
        ok = rate <= h.max_undo_rate + 1e-12
        g.check(
            "undo_rate",
            round(rate, 4),
            h.max_undo_rate,
            ok,
            f"{len(undone)}/{len(done)} live writes undone ({rate:.1%}) "
            f"{'<=' if ok else '>'} {h.max_undo_rate:.0%}",
        )
        if not ok:
            g.remedy.append(
                "people undo too many writes: review the undone runs (`flowrun trace RUN`) and "
                "tighten the gate or policy before the write"
            )
    return g


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
