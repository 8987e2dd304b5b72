"""The shop's business terms: measured from its own customers' first returns, counting those who
have not come back yet, and stable when time passes or the history is cut shorter."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import reference
from conftest import shop_orders, shop_table, terms_with

from segmentation.model.survival import FirstReturns, estimate
from segmentation.model.terms import FALLBACK_DAYS, Band, Freq, ShopTerms, Spend, measure, waiting


def _orders(seed: int) -> pd.DataFrame:
    return shop_orders(seed).assign(
        ordered_at=lambda d: pd.to_datetime(d["date"]),
        customer_id=lambda d: d["customer"],
        order_id=lambda d: d["order"],
    )


def test_terms_come_from_the_first_returns_and_the_spend_of_this_shop(tmp_path):
    table = shop_table(tmp_path, 11)
    terms = measure(table.frame, table.gaps)
    expected = reference.first_returns(_orders(11))
    got = dict(zip(table.gaps.days, table.gaps.n))
    assert got == expected  # the engine's histogram of first returns
    curve = estimate(table.gaps, *waiting(table.frame))
    assert (terms.return_time, terms.return_window, terms.lost_after) == tuple(
        curve.quantile(q) for q in (0.5, 0.8, 0.95)
    )
    assert (
        terms.measured and terms.returning_customers == sum(expected.values()) == (table.frame["occasions"] > 1).sum()
    )
    assert terms.customers == len(table.frame) and terms.returning_share == pytest.approx(curve.returning_share)
    m = table.frame["monetary"]
    assert terms.spend_high_from == pytest.approx(np.quantile(m, 0.8))
    assert terms.spend_low_below == pytest.approx(np.quantile(m, 0.4))
    repeat = table.frame["occasions"][table.frame["occasions"] >= 2]
    assert terms.frequent_from == max(3, int(np.ceil(repeat.median())))


def test_waiting_customers_are_the_one_time_buyers_by_days_since_their_purchase():
    frame = pd.DataFrame({"recency": [5, 5, 9, 3], "occasions": [1, 1, 1, 2], "monetary": [1.0] * 4})
    days, n = waiting(frame)
    assert days.tolist() == [5, 9] and n.tolist() == [2, 1]


def test_terms_do_not_move_when_only_the_snapshot_date_moves(tmp_path):
    now = shop_table(tmp_path, 12)
    later = shop_table(tmp_path, 12, as_of=now.snapshot_date + dt.timedelta(days=45))
    assert (later.frame["recency"] == now.frame["recency"] + 45).all() and later.idle_days == 45
    # no order in 45 more days: the one-time buyers are counted as waiting up to the latest purchase
    assert measure(now.frame, now.gaps) == measure(later.frame, later.gaps, idle_days=later.idle_days)
    assert measure(later.frame, later.gaps) != measure(now.frame, now.gaps)  # counted to the snapshot, they would


def test_too_few_returning_customers_fall_back_to_conventional_cut_offs():
    frame = pd.DataFrame({"recency": [5, 50, 500], "occasions": [1, 1, 2], "monetary": [10.0, 20.0, 30.0]})
    terms = measure(frame, FirstReturns.of([20], [1]))
    assert not terms.measured
    assert (terms.return_time, terms.return_window, terms.lost_after) == FALLBACK_DAYS
    assert "too few to measure" in terms.lines()[0]


def test_cut_offs_are_strictly_increasing_even_when_returns_are_all_on_one_day():
    frame = pd.DataFrame({"recency": [1, 2] * 50, "occasions": [3, 3] * 50, "monetary": [5.0, 6.0] * 50})
    terms = measure(frame, FirstReturns.of([7], [100]))
    assert terms.return_time < terms.return_window < terms.lost_after


def test_classification_boundaries():
    terms = terms_with((30, 90, 200), lost=(200, 300))
    assert terms.bands([0, 30, 31, 90, 91, 200, 201], [1] * 7).tolist() == [
        Band.ACTIVE,
        Band.ACTIVE,
        Band.LAPSING,
        Band.LAPSING,
        Band.LAPSED,
        Band.LAPSED,
        Band.LOST,
    ]
    # a repeat buyer is lost only past the repeat buyers' own cut-off
    assert terms.bands([200, 201, 300, 301], [2] * 4).tolist() == [Band.LAPSED, Band.LAPSED, Band.LAPSED, Band.LOST]
    assert terms.freqs([1, 2, 3, 50]).tolist() == [Freq.ONE_TIME, Freq.REPEAT, Freq.FREQUENT, Freq.FREQUENT]
    assert terms.spend(terms.spend_high_from) == Spend.HIGH
    assert terms.spend(terms.spend_low_below) == Spend.MID
    assert terms.spend(terms.spend_low_below - 0.01) == Spend.LOW
    assert "repeat buyers ≤ 300" in terms.lines()[1]


def test_money_reads_like_a_marketer_writes_it():
    frame = pd.DataFrame({"recency": [1], "occasions": [1], "monetary": [1.0]})
    terms = measure(frame, FirstReturns(), currency="R$")
    assert (terms.money(644.34), terms.money(1250), terms.money(12.5)) == ("R$644", "R$1,250", "R$12.50")
    assert terms.money(208.55, exact=True) == "R$208.55"  # thresholds to the cent


def test_terms_round_trip_through_json_and_ignore_unknown_keys():
    t = terms_with((30, 90, 200), currency="€")
    assert ShopTerms.from_json({**t.as_json(), "gaps": 12}) == t
