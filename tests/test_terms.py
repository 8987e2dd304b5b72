"""The shop's business terms: measured from its own repurchase gaps, stable when time passes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import reference
from conftest import shop_orders, shop_table

from segmentation.sources import GapStats
from segmentation.terms import FALLBACK_DAYS, Band, Freq, Spend, measure


def test_terms_come_from_the_gaps_and_the_spend_of_this_shop(tmp_path):
    table = shop_table(tmp_path, 11)
    terms = measure(table.frame, table.gaps)
    orders = shop_orders(11).assign(
        ordered_at=lambda d: pd.to_datetime(d["date"]),
        customer_id=lambda d: d["customer"],
        order_id=lambda d: d["order"],
    )
    p50, p80, p95, returning = reference.gap_quantiles(orders)
    assert (terms.return_time, terms.return_window, terms.lost_after) == (p50, p80, p95)
    assert terms.measured and terms.returning_customers == returning
    m = table.frame["monetary"]
    assert terms.spend_high_from == pytest.approx(np.quantile(m, 0.8))
    assert terms.spend_low_below == pytest.approx(np.quantile(m, 0.4))
    repeat = table.frame["occasions"][table.frame["occasions"] >= 2]
    assert terms.frequent_from == max(3, int(np.ceil(repeat.median())))


def test_terms_do_not_drift_when_only_the_snapshot_date_moves(tmp_path):
    now = shop_table(tmp_path, 12)
    later = shop_table(tmp_path, 12, as_of=now.snapshot_date + dt.timedelta(days=45))
    assert (later.frame["recency"] == now.frame["recency"] + 45).all()
    assert measure(now.frame, now.gaps) == measure(later.frame, later.gaps)


def test_too_few_returning_customers_fall_back_to_conventional_cut_offs():
    frame = pd.DataFrame({"recency": [5, 50, 500], "occasions": [1, 1, 2], "monetary": [10.0, 20.0, 30.0]})
    terms = measure(frame, GapStats(20, 40, 60, returning_customers=1, gaps=1))
    assert not terms.measured
    assert (terms.return_time, terms.return_window, terms.lost_after) == FALLBACK_DAYS
    assert "too few to measure" in terms.lines()[0]


def test_cut_offs_are_strictly_increasing_even_when_gaps_are_all_equal():
    frame = pd.DataFrame({"recency": [1, 2], "occasions": [3, 3], "monetary": [5.0, 6.0]})
    terms = measure(frame, GapStats(7, 7, 7, returning_customers=100, gaps=200))
    assert terms.return_time < terms.return_window < terms.lost_after


def test_classification_boundaries():
    frame = pd.DataFrame({"recency": [1] * 10, "occasions": [2] * 10, "monetary": np.arange(1.0, 11.0)})
    terms = measure(frame, GapStats(30, 90, 200, returning_customers=100, gaps=100))
    assert terms.bands([0, 30, 31, 90, 91, 200, 201]).tolist() == [
        Band.ACTIVE,
        Band.ACTIVE,
        Band.LAPSING,
        Band.LAPSING,
        Band.LAPSED,
        Band.LAPSED,
        Band.LOST,
    ]
    assert terms.freqs([1, 2, 3, 50]).tolist() == [Freq.ONE_TIME, Freq.REPEAT, Freq.FREQUENT, Freq.FREQUENT]
    assert terms.spend(terms.spend_high_from) == Spend.HIGH
    assert terms.spend(terms.spend_low_below) == Spend.MID
    assert terms.spend(terms.spend_low_below - 0.01) == Spend.LOW


def test_money_reads_like_a_marketer_writes_it():
    frame = pd.DataFrame({"recency": [1], "occasions": [1], "monetary": [1.0]})
    terms = measure(frame, GapStats(None, None, None, 0, 0), currency="R$")
    assert (terms.money(644.34), terms.money(1250), terms.money(12.5)) == ("R$644", "R$1,250", "R$12.50")
    assert terms.money(208.55, exact=True) == "R$208.55"  # thresholds to the cent
