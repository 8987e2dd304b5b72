"""Return times that allow for customers who have not come back yet (``survival``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.model.survival import FirstReturns, estimate, kaplan_meier


def test_kaplan_meier_matches_a_hand_computed_table():
    # first returns after 2, 3, 3 and 5 days; not back yet after 1, 3, 4 and 6 days
    days, returned, at_risk = kaplan_meier([2, 3, 5], [1, 2, 1], [1, 3, 4, 6], [1, 1, 1, 1])
    # at risk: day 1: 8; day 2: 7; day 3: 6 (2 return, 1 censored); day 4: 3; day 5: 2; day 6: 1
    assert days.tolist() == [1, 2, 3, 4, 5, 6]
    assert at_risk.tolist() == [8, 7, 6, 3, 2, 1]
    s = [1.0, 1 - 1 / 7]
    s.append(s[-1] * (1 - 2 / 6))
    s.append(s[-1])
    s.append(s[-1] * (1 - 1 / 2))
    s.append(s[-1])
    expected = [1 - (1.0 if i == 0 else x) for i, x in enumerate(s)]
    np.testing.assert_allclose(returned, [0.0, *expected[1:]], rtol=0, atol=1e-12)


def _history(
    rng, customers: int, length: int, share: float, gap_sampler
) -> tuple[FirstReturns, np.ndarray, np.ndarray]:
    """A shop observed for ``length`` days: first purchases spread evenly, ``share`` of the
    customers come back after a gap drawn by ``gap_sampler``; returns after the end are unseen."""
    first = rng.uniform(0, length, customers)
    comes_back = rng.random(customers) < share
    gap = np.maximum(np.round(gap_sampler(customers)), 1)
    tenure = np.floor(length - first).astype(int)
    seen = comes_back & (gap <= tenure)
    back_days, back_n = np.unique(gap[seen].astype(int), return_counts=True)
    wait_days, wait_n = np.unique(tenure[~seen], return_counts=True)
    return FirstReturns.of(back_days, back_n), wait_days, wait_n


SHAPES = {
    # median 30 days, 95% within 112: a lognormal time to return
    "lognormal": (
        lambda rng: lambda n: rng.lognormal(np.log(30), 0.8, n),
        (30.0, 30 * np.exp(0.8 * 0.8416), 30 * np.exp(0.8 * 1.6449)),
    ),
    # a Weibull of shape 1.5 and scale 40
    "Weibull": (
        lambda rng: lambda n: 40 * rng.weibull(1.5, n),
        tuple(40 * (-np.log(1 - q)) ** (1 / 1.5) for q in (0.5, 0.8, 0.95)),
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("multiple", [2, 4, 12])
def test_estimates_are_within_ten_percent_of_the_truth_at_any_history_of_twice_the_return_time(shape, multiple):
    make, truth = SHAPES[shape]
    rng = np.random.default_rng(multiple)
    length = int(multiple * truth[0])
    first, wait_days, wait_n = _history(rng, 60_000, length, 0.3, make(rng))
    curve = estimate(first, wait_days, wait_n)
    got = [curve.quantile(q) for q in (0.5, 0.8, 0.95)]
    for g, t in zip(got, truth):
        assert abs(g - t) <= 0.10 * t, (shape, multiple, got, truth, curve.tail)
    assert curve.returning_share == pytest.approx(0.3, abs=0.03)
    if length < 365:
        assert curve.tail and curve.measured_to < 365  # the unseen part was extrapolated


def test_ignoring_censoring_would_have_drifted_where_the_estimate_does_not():
    make, truth = SHAPES["lognormal"]
    rng = np.random.default_rng(3)
    short = _history(rng, 60_000, 60, 0.3, make(rng))
    seen_only = np.repeat(short[0].days, short[0].n)
    naive = np.quantile(seen_only, 0.95)  # the gaps seen, as if the history had shown all of them
    assert naive < 0.6 * truth[2]
    assert estimate(*short).quantile(0.95) == pytest.approx(truth[2], rel=0.10)


def test_no_return_at_all_gives_an_empty_curve():
    curve = estimate(FirstReturns(), np.array([5, 10]), np.array([3, 4]))
    assert curve.returned == 0 and curve.returning_share == 0.0 and curve.customers == 7


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    share=st.floats(0.02, 0.9),
    length=st.integers(20, 900),
    median=st.floats(3, 200),
)
def test_the_terms_are_ordered_and_within_the_reference_year(seed, share, length, median):
    rng = np.random.default_rng(seed)
    first, wait_days, wait_n = _history(rng, 3_000, length, share, lambda n: rng.lognormal(np.log(median), 1.0, n))
    if not first.customers:
        return
    curve = estimate(first, wait_days, wait_n)
    q = [curve.quantile(x) for x in (0.5, 0.8, 0.95)]
    assert 0 <= q[0] <= q[1] <= q[2] <= 365
    assert np.all(np.diff(curve.share) >= 0) and 0 <= curve.returning_share <= 1
