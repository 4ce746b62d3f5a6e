"""Run every case K times, add up the metrics, and hold them to the gates and the baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import files
from runner.errors import UsageError
from runner.evals.cases import Case
from runner.evals.runs import RunRecord, new_workdir, response_lines, run_case
from runner.evals.stats import Z95, min_repeats, percentile, wilson_lower
from runner.plan.model import Plan
from runner.spec.models import EvalGates

BASELINE_FORMAT = "flowrun-eval-baseline/v1"
DRIFT_METRICS = ("cost_per_task_usd", "tool_calls_per_task", "tokens_per_task")


@dataclass(kw_only=True)
class CaseSummary:
    id: str
    kind: str
    file: str
    line: int
    runs: int
    passes: int
    wilson_lower: float
    passed: bool
    failures: list[str]
    statuses: list[str]

    @property
    def pass_rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0


@dataclass(kw_only=True)
class Gate:
    name: str
    passed: bool
    actual: Any
    threshold: Any
    message: str


@dataclass(kw_only=True)
class Report:
    spec: str
    spec_path: str
    profile: str | None
    repeat: int
    cases: list[CaseSummary]
    runs: list[RunRecord]
    metrics: dict[str, Any]
    per_case: dict[str, dict[str, float]]
    gates: list[Gate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "spec_path": self.spec_path,
            "profile": self.profile,
            "repeat": self.repeat,
            "passed": self.passed,
            "metrics": self.metrics,
            "gates": [g.__dict__ for g in self.gates],
            "notes": self.notes,
            "cases": [{**c.__dict__, "pass_rate": c.pass_rate} for c in self.cases],
            "runs": [r.to_json() for r in self.runs],
        }


def run_suite(plan: Plan, cases: list[Case], *, repeat: int) -> Report:
    """Run each case `repeat` times, sequentially, each run on its own fresh fixture."""
    has_llm = any(n.llm is not None or (n.map and n.map.inner.llm) for n in plan.nodes.values())
    if has_llm and any(c.model.responses is None and not response_lines(c) for c in cases):
        from runner.models.credentials import check_credentials
        from runner.plan.routes import plan_models

        check_credentials(plan_models(plan))  # a case calls a provider: its key, before any case
    if has_llm and any(c.model.responses is not None or c.model.faults for c in cases):
        from runner.models.client import ensure_litellm

        ensure_litellm()  # import once, so the first case's latency is the case's
    runs: list[RunRecord] = []
    with new_workdir() as tmp:
        for case in cases:
            for k in range(1, repeat + 1):
                runs.append(run_case(plan, case, repeat=k, workdir=Path(tmp)))
    summaries = []
    for case in cases:
        mine = [r for r in runs if r.case_id == case.id]
        passes = sum(r.passed for r in mine)
        failures: list[str] = []
        for r in mine:
            for f in r.failures:
                if f not in failures:
                    failures.append(f)
        summaries.append(
            CaseSummary(
                id=case.id,
                kind=case.kind,
                file=case.file,
                line=case.line,
                runs=len(mine),
                passes=passes,
                wilson_lower=wilson_lower(passes, len(mine)),
                passed=passes == len(mine),
                failures=failures,
                statuses=[r.status for r in mine],
            )
        )
    return Report(
        spec=plan.name,
        spec_path=plan.loaded.path,
        profile=plan.profile,
        repeat=repeat,
        cases=summaries,
        runs=runs,
        metrics=metrics(runs),
        per_case=per_case(runs),
    )


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def metrics(runs: list[RunRecord]) -> dict[str, Any]:
    """Suite-wide figures: completion, escalation, recovery, violations, distributions."""
    n = len(runs)
    esc = [(r.status == "escalated") == (r.expected_status == "escalated") for r in runs]
    recoverable = [r for r in runs if r.faulted and r.expected_status == "succeeded"]
    lat = [r.latency_s for r in runs]
    cost = [r.cost_usd for r in runs]
    by_tool: dict[str, float] = {}
    for r in runs:
        for t, c in r.calls_by_tool.items():
            by_tool[t] = by_tool.get(t, 0) + c
    return {
        "runs": n,
        "task_completion": sum(r.passed for r in runs) / n if n else 0.0,
        "escalation_correctness": sum(esc) / n if n else 0.0,
        "tool_recovery": (
            sum(r.status == "succeeded" for r in recoverable) / len(recoverable)
            if recoverable
            else None
        ),
        "recovery_runs": len(recoverable),
        "policy_violations": sum(r.violations for r in runs),
        "latency_s": {
            "p50": percentile(lat, 50),
            "p95": percentile(lat, 95),
            "max": max(lat, default=0.0),
        },
        "cost_usd": {
            "total": sum(cost),
            "mean": _mean(cost),
            "p50": percentile(cost, 50),
            "p95": percentile(cost, 95),
        },
        "cost_per_task_usd": _mean(cost),
        "tool_calls_per_task": _mean([float(r.tool_calls) for r in runs]),
        "llm_calls_per_task": _mean([float(r.llm_calls) for r in runs]),
        "tokens_per_task": _mean([float(r.tokens) for r in runs]),
        "tool_calls_by_tool_per_task": {t: c / n for t, c in sorted(by_tool.items())} if n else {},
        "by_kind": {
            k: {"runs": len(rs), "passed": sum(r.passed for r in rs)}
            for k in ("gold", "synthetic", "adversarial")
            if (rs := [r for r in runs if r.kind == k])
        },
    }


def per_case(runs: list[RunRecord]) -> dict[str, dict[str, float]]:
    """Mean cost, tool calls and tokens of each case, what a baseline remembers."""
    out: dict[str, dict[str, float]] = {}
    for cid in dict.fromkeys(r.case_id for r in runs):
        mine = [r for r in runs if r.case_id == cid]
        out[cid] = {
            "cost_per_task_usd": round(_mean([r.cost_usd for r in mine]), 9),
            "tool_calls_per_task": _mean([float(r.tool_calls) for r in mine]),
            "tokens_per_task": _mean([float(r.tokens) for r in mine]),
        }
    return out


def apply_gates(report: Report, gates: EvalGates, baseline: dict[str, Any] | None) -> None:
    """Judge the report: per-case pass rates (Wilson when repeated), thresholds, drift."""
    m = report.metrics
    out = report.gates
    t = gates.min_pass_rate
    for c in report.cases:
        if c.runs == 1:
            ok = c.passes == 1
            msg = "passed" if ok else "failed: " + "; ".join(c.failures)
            out.append(
                Gate(name=f"case:{c.id}", passed=ok, actual=c.pass_rate, threshold=1, message=msg)
            )
            continue
        ok = c.wilson_lower >= t
        msg = f"{c.passes}/{c.runs} passed, Wilson 95% lower bound {c.wilson_lower:.3f}"
        msg += f" {'>=' if ok else '<'} min_pass_rate {t:g}"
        if not ok and c.passes == c.runs:
            need = min_repeats(t, Z95)
            msg += f" (all passed, but {c.runs} repeats cannot show it"
            msg += f"; --repeat {need} can)" if need else ")"
        elif c.failures:
            msg += ": " + "; ".join(c.failures)
        out.append(
            Gate(
                name=f"case:{c.id}",
                passed=ok,
                actual=round(c.wilson_lower, 4),
                threshold=t,
                message=msg,
            )
        )

    def ge(name: str, actual: float | None, threshold: float | None, fmt: str = "{:.3f}") -> None:
        if threshold is None:
            return
        if actual is None:
            report.notes.append(f"{name}: no runs to measure it; gate not applied")
            return
        ok = actual >= threshold
        out.append(
            Gate(
                name=name,
                passed=ok,
                actual=actual,
                threshold=threshold,
                message=f"{name} {fmt.format(actual)} {'>=' if ok else '<'} {threshold:g}",
            )
        )

    def le(name: str, actual: float, threshold: float | None, fmt: str = "{:.3f}") -> None:
        if threshold is None:
            return
        ok = actual <= threshold
        out.append(
            Gate(
                name=name,
                passed=ok,
                actual=actual,
                threshold=threshold,
                message=f"{name} {fmt.format(actual)} {'<=' if ok else '>'} {threshold:g}",
            )
        )

    ge("task_completion", m["task_completion"], gates.min_task_completion)
    ge("escalation_correctness", m["escalation_correctness"], gates.min_escalation_correctness)
    ge("tool_recovery", m["tool_recovery"], gates.min_tool_recovery)
    le("policy_violations", m["policy_violations"], gates.max_policy_violations, "{}")
    le("cost_per_task_usd", m["cost_per_task_usd"], gates.max_cost_per_task_usd, "{:.6f}")
    le("p95_latency_s", m["latency_s"]["p95"], gates.max_p95_latency_s, "{:.3f}")
    if baseline is not None:
        drift(report, baseline, gates.drift_tolerance)


def drift(report: Report, baseline: dict[str, Any], tolerance: float) -> None:
    """Compare per-task cost, tool calls and tokens with the baseline over the cases both have."""
    base_cases: dict[str, dict[str, float]] = baseline.get("cases", {})
    common = [c for c in report.per_case if c in base_cases]
    missing = [c for c in base_cases if c not in report.per_case]
    new = [c for c in report.per_case if c not in base_cases]
    if missing:
        report.notes.append(f"baseline cases not run: {', '.join(missing)}")
    if new:
        report.notes.append(f"cases not in the baseline (not compared): {', '.join(new)}")
    if not common:
        report.notes.append("no case in common with the baseline: drift not measured")
        return
    for metric in DRIFT_METRICS:
        now = _mean([report.per_case[c][metric] for c in common])
        then = _mean([float(base_cases[c].get(metric, 0.0)) for c in common])
        rel = (now - then) / then if then else (0.0 if now == then else float("inf"))
        fmt = "{:.6f}" if metric.startswith("cost") else "{:.2f}"
        what = f"{metric} {fmt.format(now)} vs baseline {fmt.format(then)}"
        pct = "+inf" if rel == float("inf") else f"{rel:+.1%}"
        ok = rel <= tolerance
        msg = f"drift: {what} ({pct}, tolerance {tolerance:.0%})"
        if rel < -tolerance:
            report.notes.append(
                f"{metric} fell {pct} below the baseline; refresh it with --update-baseline"
            )
        report.gates.append(
            Gate(name=f"drift:{metric}", passed=ok, actual=now, threshold=then, message=msg)
        )


def load_baseline(path: str, plan: Plan) -> dict[str, Any]:
    """Read a committed baseline; one for another spec or in another format is bad input."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(
            f"--baseline: no such file {path!r}",
            hint="create it: flowrun eval SPEC --cases PATH --baseline FILE --update-baseline",
        )
    try:
        data = files.loads(files.read_text(p, limit=64 * 1024 * 1024))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}:{e.colno}: baseline is not JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--baseline: cannot read {path!r}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UsageError(f"{path}: not a flowrun eval baseline (format {BASELINE_FORMAT!r})")
    if data.get("spec") != plan.name:
        raise UsageError(
            f"{path}: baseline is for spec {data.get('spec')!r}, not {plan.name!r}",
            hint="pass the baseline of this spec, or create one with --update-baseline",
        )
    cases = data.get("cases")
    if not isinstance(cases, dict) or not all(
        isinstance(v, dict) and all(isinstance(v.get(k, 0), int | float) for k in DRIFT_METRICS)
        for v in cases.values()
    ):
        raise UsageError(f"{path}: 'cases' must map case ids to {', '.join(DRIFT_METRICS)}")
    return data


def baseline_of(report: Report) -> dict[str, Any]:
    """The baseline to commit: per-case means and the suite's per-task means."""
    return {
        "format": BASELINE_FORMAT,
        "spec": report.spec,
        "profile": report.profile,
        "repeat": report.repeat,
        "metrics": {k: report.metrics[k] for k in DRIFT_METRICS},
        "cases": report.per_case,
    }
