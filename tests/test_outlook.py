"""The windows of a shop's history, what names claim about the future, and their checks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import shop_orders, terms_with

from segmentation.analysis.validate import future_checks
from segmentation.data.sources import opened
from segmentation.data.spec import source_from_spec
from segmentation.model import outlook
from segmentation.model.outlook import Future, TierFutures, wilson


def test_windows_equal_the_pandas_reference(tmp_path):
    orders = shop_orders(41, customers=400, days=400)
    path = tmp_path / "shop.csv"
    orders.to_csv(path, index=False)
    src = source_from_spec(path, customer_col="customer", order_col="order", date_col="date", amount_col="amount")
    cutoffs, horizon = [dt.date(2023, 9, 1), dt.date(2023, 6, 1)], 45
    with opened(src, None) as pass_:
        pass_.rfm()
        got = pass_.windows(cutoffs, horizon, dt.date(2024, 1, 31))
    day = pd.to_datetime(orders["date"]).dt.date
    cents = (orders["amount"] * 100).round().astype(int)
    daily = orders.assign(day=day, cents=cents).groupby(["customer", "day"], as_index=False)["cents"].sum()
    rows = []
    for c in cutoffs:
        before = daily[daily["day"] <= c]
        after = daily[(daily["day"] > c) & (daily["day"] <= c + dt.timedelta(days=horizon))]
        for cust, d in before.groupby("customer"):
            later = after[after["customer"] == cust]
            rows.append(
                (
                    cust,
                    c,
                    (c - d["day"].max()).days,
                    (c - d["day"].min()).days,
                    len(d),
                    d["cents"].sum() / 100,
                    len(later),
                )
            )
    want = pd.DataFrame(rows, columns=["customer_id", "cutoff", "recency", "tenure", "occasions", "monetary", "later"])
    got = got.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    want = want.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    assert list(got["customer_id"]) == list(want["customer_id"]) and list(got["cutoff"]) == list(want["cutoff"])
    for col in ("recency", "tenure", "occasions"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(got["monetary"], want["monetary"], atol=0.005)
    np.testing.assert_array_equal(got["later_days"].to_numpy(), want["later"].to_numpy())
    assert (got["returned"] == (want["later"] > 0)).all()


def test_cutoffs_are_a_third_of_a_horizon_apart_with_history_before_each():
    last, first = dt.date(2024, 12, 31), dt.date(2024, 1, 1)
    cuts = outlook.cutoffs_for(last, first, 90)
    assert cuts == [last - dt.timedelta(days=90 + 30 * j) for j in range(4)]
    assert outlook.cutoffs_for(last, dt.date(2024, 9, 20), 90) == [dt.date(2024, 10, 2)]
    assert outlook.cutoffs_for(last, dt.date(2024, 10, 1), 90) == []


def _windows(recency, occasions, returned) -> pd.DataFrame:
    return pd.DataFrame({"recency": recency, "occasions": occasions, "returned": returned})


def test_repeat_buyers_count_as_lost_only_once_they_come_back_less_than_the_least_likely():
    rng = np.random.default_rng(0)
    terms = terms_with((30, 90, 200))
    n = 20_000
    recency = rng.integers(0, 600, n)
    occasions = np.where(rng.random(n) < 0.5, 1, 3)
    # one-time buyers fade by 200 days; repeat buyers keep coming back until about 400 days
    one_time = np.select([recency <= 90, recency <= 200], [0.2, 0.05], 0.005)
    p = np.where(occasions >= 2, np.where(recency <= 400, 0.30, 0.01), one_time)
    w = _windows(recency, occasions, rng.random(n) < p)
    one, rep = outlook.lost_cutoffs(terms, w)
    assert one == 200  # one-time buyers past the lost cut-off come back no more than the lapsed do
    assert 380 <= rep <= 420  # repeat buyers: lapsed until they stop coming back, in steps of 20 days
    none_back = _windows(recency, occasions, np.zeros(n, dtype=bool))
    assert outlook.lost_cutoffs(terms, none_back) == (200, 200)


def _f(customers: int, rate: float) -> Future:
    return Future(customers, round(customers * rate), 0.0)


def _tiers(active=0.4, risk=0.2, lapsing=0.25, lapsed=0.1, lost=0.03) -> TierFutures:
    return TierFutures(
        90,
        (dt.date(2024, 1, 1),),
        _f(5000, active),
        _f(900, risk),
        _f(900, lapsing),
        _f(900, lapsed),
        _f(900, lost),
        _f(9000, 0.1),
    )


def test_the_names_claims_pass_when_the_future_agrees():
    segs = [
        ("Champions", "Champions", _f(1000, 0.6)),
        ("New Customers", "New Customers", _f(900, 0.3)),
        ("At Risk", "At Risk", _f(500, 0.2)),
        ("Hibernating", "Hibernating", _f(800, 0.1)),
        ("Lost", "Lost", _f(3000, 0.03)),
        ("Tiny", "Lost", _f(20, 0.9)),  # under 200 customers: not compared
    ]
    checks = future_checks(segs, _tiers())
    assert checks and all(c.passed for c in checks)
    assert not any("Tiny" in c.claim for c in checks)


@pytest.mark.parametrize(
    "segs, tiers, failing",
    [
        ([("New Customers", "New Customers", _f(900, 0.15))], _tiers(), "New Customers comes back more often"),
        ([], _tiers(risk=0.05), "at risk come back more often than the lapsed"),
        (
            [("Lost", "Lost", _f(900, 0.12)), ("Hibernating", "Hibernating", _f(900, 0.1))],
            _tiers(),
            "Lost comes back least",
        ),
        ([("Lost", "Lost", _f(900, 0.25))], _tiers(active=0.4), "at most half as often"),
        (
            [("At Risk", "At Risk", _f(900, 0.08)), ("Hibernating", "Hibernating", _f(900, 0.1))],
            _tiers(),
            "At Risk comes back more often than any Hibernating",
        ),
    ],
)
def test_each_claim_fails_when_the_future_contradicts_it(segs, tiers, failing):
    checks = future_checks(segs, tiers)
    assert [c.claim for c in checks if c.passed is False] and any(
        failing in c.claim for c in checks if c.passed is False
    )


def test_no_measured_future_is_said_not_failed():
    (check,) = future_checks([("Lost", "Lost", _f(900, 0.5))], None)
    assert check.passed is None and "too short" in check.detail


def test_the_wilson_interval():
    lo, hi = wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(0, 50)[0] == 0.0


def test_a_history_too_large_to_read_whole_without_a_hash_learns_no_chance_instead_of_filling_memory(
    tmp_path, monkeypatch
):
    """Past ``MAX_WINDOW_ROWS`` customer-windows the windows are read from a hash sample of the
    customers; an engine without a known hash (a warehouse through another SQLAlchemy driver)
    reads none rather than every customer at every cut-off, and training says why it has no
    chance to buy again."""
    from segmentation.data.duckdb_engine import DuckDBEngine
    from segmentation.serving.store import ModelStore
    from segmentation.serving.training import train

    orders = shop_orders(43, customers=600, days=500)
    path = tmp_path / "shop.csv"
    orders.to_csv(path, index=False)
    src = source_from_spec(path, customer_col="customer", order_col="order", date_col="date", amount_col="amount")
    monkeypatch.setattr(outlook, "MAX_WINDOW_ROWS", 500)  # this shop's windows need a sample
    _, sampled = train(src, ModelStore(tmp_path / "hashed"), k=4)
    assert sampled.chance is not None and "hash" not in sampled.horizon_note
    monkeypatch.setattr(DuckDBEngine, "bucket", lambda self, column, buckets, bucket: None)
    monkeypatch.setattr(DuckDBEngine, "bucket_of", lambda self, column, buckets: None)
    _, unhashed = train(src, ModelStore(tmp_path / "unhashed"), k=4)
    assert unhashed.chance is None
    assert "600 customers are too many to read at each cut-off without a hash sample" in unhashed.horizon_note
