"""The report in the shapes CI reads: JUnit XML, a Markdown PR comment, and plain text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from runner.evals.suite import Report


def junit_xml(report: Report) -> str:
    """One testsuite for the cases and one for the suite-wide gates; failures carry the reason."""
    root = ET.Element("testsuites", name=f"flowrun eval {report.spec}")
    total_time = sum(r.latency_s for r in report.runs)
    cases = ET.SubElement(
        root,
        "testsuite",
        name=f"{report.spec}.cases",
        tests=str(len(report.cases)),
        failures="0",
        errors="0",
        time=f"{total_time:.3f}",
    )
    failed = 0
    by_case = {g.name.removeprefix("case:"): g for g in report.gates if g.name.startswith("case:")}
    for c in report.cases:
        t = sum(r.latency_s for r in report.runs if r.case_id == c.id)
        tc = ET.SubElement(
            cases,
            "testcase",
            classname=f"{report.spec}.{c.kind}",
            name=c.id,
            time=f"{t:.3f}",
            file=c.file,
            line=str(c.line),
        )
        gate = by_case.get(c.id)
        if gate is not None and not gate.passed:
            failed += 1
            f = ET.SubElement(tc, "failure", message=gate.message[:500], type="eval")
            f.text = "\n".join(c.failures) or gate.message
        ET.SubElement(
            tc, "system-out"
        ).text = f"{c.passes}/{c.runs} passed; statuses: {', '.join(c.statuses)}"
    cases.set("failures", str(failed))
    others = [g for g in report.gates if not g.name.startswith("case:")]
    gates = ET.SubElement(
        root,
        "testsuite",
        name=f"{report.spec}.gates",
        tests=str(len(others)),
        errors="0",
        failures=str(sum(not g.passed for g in others)),
        time="0",
    )
    for g in others:
        tc = ET.SubElement(
            gates, "testcase", classname=f"{report.spec}.gates", name=g.name, time="0"
        )
        if not g.passed:
            ET.SubElement(tc, "failure", message=g.message, type="gate").text = g.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report) -> str:
    """A PR comment: verdict first, failing gates, metrics, then every case."""
    m = report.metrics
    failing = [g for g in report.gates if not g.passed]
    verdict = (
        "✅ passed"
        if report.passed
        else f"❌ failed ({len(failing)} gate{'s' * (len(failing) != 1)})"
    )
    lines = [
        f"## flowrun eval: `{report.spec}` — {verdict}",
        "",
        f"{len(report.cases)} cases × {report.repeat} run{'s' * (report.repeat != 1)}"
        f" = {m['runs']} runs; profile `{report.profile or 'default'}`.",
        "",
    ]
    if failing:
        lines += ["### Failing gates", ""]
        lines += [f"- **{_cell(g.name)}**: {_cell(g.message)}" for g in failing]
        lines.append("")
    rec = m["tool_recovery"]
    recovery = "n/a" if rec is None else f"{rec:.1%}"
    lat, cost = m["latency_s"], m["cost_usd"]
    lines += [
        "### Metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| task completion | {m['task_completion']:.1%} |",
        f"| escalation correctness | {m['escalation_correctness']:.1%} |",
        f"| tool failure recovery | {recovery} ({m['recovery_runs']} runs) |",
        f"| policy violations | {m['policy_violations']} |",
        f"| latency p50 / p95 / max | {lat['p50']:.3f}s / {lat['p95']:.3f}s / {lat['max']:.3f}s |",
        f"| cost per task (mean / p95) | ${cost['mean']:.6f} / ${cost['p95']:.6f} |",
        f"| tool calls per task | {m['tool_calls_per_task']:.2f} |",
        f"| LLM calls per task | {m['llm_calls_per_task']:.2f} |",
        f"| tokens per task | {m['tokens_per_task']:.1f} |",
        "",
    ]
    drift = [g for g in report.gates if g.name.startswith("drift:")]
    if drift:
        lines += [
            "### Drift against the baseline",
            "",
            "| metric | now | baseline | |",
            "|---|---|---|---|",
        ]
        for g in drift:
            lines.append(
                f"| {g.name.removeprefix('drift:')} | {g.actual:.6g} | {g.threshold:.6g} |"
                f" {'✅' if g.passed else '❌'} |"
            )
        lines.append("")
    lines += ["### Cases", "", "| case | kind | passed | status | notes |", "|---|---|---|---|---|"]
    for c in report.cases:
        mark = "✅" if c.passed else "❌"
        status = ", ".join(sorted(set(c.statuses)))
        note = "; ".join(c.failures)
        lines.append(
            f"| {mark} `{c.id}` | {c.kind} | {c.passes}/{c.runs} | {status} | {_cell(note)} |"
        )
    if report.notes:
        lines += ["", "### Notes", ""] + [f"- {_cell(n)}" for n in report.notes]
    return "\n".join(lines) + "\n"


def text(report: Report) -> str:
    """What a terminal shows: one line per case, the failing gates, the verdict."""
    m = report.metrics
    out = []
    for c in report.cases:
        mark = "ok  " if c.passed else "FAIL"
        extra = f"  {'; '.join(c.failures)}" if c.failures else ""
        out.append(f"{mark} {c.id:<36} {c.kind:<11} {c.passes}/{c.runs}{extra}")
    rec = m["tool_recovery"]
    recovery = "n/a" if rec is None else f"{rec:.1%}"
    out += [
        "",
        f"task completion {m['task_completion']:.1%}, escalation correctness "
        f"{m['escalation_correctness']:.1%}, tool recovery {recovery}, "
        f"policy violations {m['policy_violations']}",
        f"per task: ${m['cost_per_task_usd']:.6f}, {m['tool_calls_per_task']:.2f} tool calls, "
        f"{m['llm_calls_per_task']:.2f} LLM calls, {m['tokens_per_task']:.1f} tokens; "
        f"latency p50 {m['latency_s']['p50']:.3f}s p95 {m['latency_s']['p95']:.3f}s",
    ]
    for n in report.notes:
        out.append(f"note: {n}")
    failing = [g for g in report.gates if not g.passed]
    for g in failing:
        if not g.name.startswith("case:"):
            out.append(f"gate failed: {g.message}")
    n_case = sum(1 for g in failing if g.name.startswith("case:"))
    if n_case:
        out.append(f"gate failed: {n_case} case{'s' * (n_case != 1)} below the pass rate")
    out.append("eval passed" if report.passed else "eval FAILED")
    return "\n".join(out)
