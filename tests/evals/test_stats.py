"""The Wilson gate at its edges: no passes, all passes, and the smallest repeat counts."""

from __future__ import annotations

import pytest

from runner.evals.stats import min_repeats, percentile, wilson_lower


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10, 100])
def test_no_passes_has_lower_bound_zero(k: int) -> None:
    assert wilson_lower(0, k) == 0.0


@pytest.mark.parametrize(
    ("k", "expected"), [(1, 0.2065), (2, 0.3424), (3, 0.4385), (16, 0.8064), (100, 0.9630)]
)
def test_all_passes_is_bounded_by_the_evidence(k: int, expected: float) -> None:
    assert wilson_lower(k, k) == pytest.approx(expected, abs=1e-4)
    assert wilson_lower(k, k) < 1.0  # K/K never proves certainty


def test_small_k_mixed() -> None:
    assert wilson_lower(1, 2) == pytest.approx(0.0945, abs=1e-4)
    assert wilson_lower(2, 3) == pytest.approx(0.2077, abs=1e-4)
    assert wilson_lower(1, 3) == pytest.approx(0.0615, abs=1e-4)


def test_lower_bound_grows_with_passes_and_with_repeats() -> None:
    assert [wilson_lower(p, 10) for p in range(11)] == sorted(
        wilson_lower(p, 10) for p in range(11)
    )
    assert wilson_lower(8, 10) < wilson_lower(80, 100)  # same rate, more evidence


def test_zero_runs_and_impossible_counts() -> None:
    assert wilson_lower(0, 0) == 0.0
    with pytest.raises(ValueError):
        wilson_lower(4, 3)


def test_min_repeats_is_the_first_k_whose_all_pass_clears_the_threshold() -> None:
    assert min_repeats(0.8) == 16
    assert wilson_lower(15, 15) < 0.8 <= wilson_lower(16, 16)
    assert min_repeats(0.0) == 1
    assert min_repeats(1.0) is None


def test_percentile() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
