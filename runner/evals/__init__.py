"""`flowrun eval`: cases, fault injection, metrics and gates that make a regression fail CI."""

from runner.evals.cases import Case, load_cases
from runner.evals.suite import Report, apply_gates, baseline_of, load_baseline, run_suite

__all__ = [
    "Case",
    "Report",
    "apply_gates",
    "baseline_of",
    "load_baseline",
    "load_cases",
    "run_suite",
]
