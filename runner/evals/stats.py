"""Wilson intervals and percentiles: pass rates from few repeats are judged by what they prove."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_lower(passes: int, n: int, z: float = Z95) -> float:
    """Lower bound of the Wilson score interval for passes/n (0.0 when n is 0)."""
    if n <= 0:
        return 0.0
    if not 0 <= passes <= n:
        raise ValueError(f"passes {passes} must be between 0 and n {n}")
    if passes == 0:
        return 0.0  # exact: the formula leaves rounding dust here
    p = passes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def min_repeats(threshold: float, z: float = Z95) -> int | None:
    """Fewest repeats whose all-pass Wilson lower bound clears threshold (None: never)."""
    if threshold >= 1.0:
        return None
    if threshold <= 0.0:
        return 1
    # all passes: lower bound is n / (n + z²), which clears t once n >= t z² / (1 - t)
    n = max(1, math.ceil(threshold * z * z / (1 - threshold) - 1e-9))
    while wilson_lower(n, n, z) < threshold:
        n += 1
    return n


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
