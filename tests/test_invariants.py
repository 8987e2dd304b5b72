"""No promotion without a purchase: time passing alone never makes a customer look more active."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from conftest import shop_table
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.model.terms import Band
from segmentation.serving.inputs import parse_rfm
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train


def _segment_bands(served, labels):
    by = served.trained.by_cluster()
    return np.array([int(by[c].band) for c in labels])


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 5000),
    days=st.integers(1, 120),
    k=st.integers(4, 14),
    gap=st.floats(7, 90),
    one_time=st.floats(0.3, 0.95),
)
@pytest.mark.integration  # the CLI and the store end to end
def test_scoring_or_retraining_later_never_promotes_anyone(tmp_path_factory, seed, days, k, gap, one_time):
    tmp = tmp_path_factory.mktemp("inv")
    now = shop_table(tmp, seed, gap_days=gap, one_time_share=one_time)
    src = source_from_spec(
        tmp / f"shop-{seed}.csv", customer_col="customer", order_col="order", date_col="date", amount_col="amount"
    )
    service = SegmentService(ModelStore(tmp / "art"))
    train(src, service.store, k=k)
    first = service.served()
    scored_now = first.score(now.frame)
    band_now = _segment_bands(first, scored_now.labels)
    assert scored_now.at_risk.sum() == first.at_risk().customers  # scoring the training data reproduces it

    later_date = now.snapshot_date + dt.timedelta(days=days)
    later = shop_table(tmp, seed, as_of=later_date)  # the same orders, counted to a later day
    # scored later by the same model
    scored_later = first.score(later.frame)
    band_scored = _segment_bands(first, scored_later.labels)
    assert (band_scored >= band_now).all()
    assert not (scored_now.at_risk & (band_scored == Band.ACTIVE)).any()
    # retrained on the later snapshot
    train(src, service.store, k=k, as_of=later_date)
    second = service.served()
    assert second.version != first.version
    # the same orders counted to a later day: nothing new was learned
    assert second.terms == first.terms and second.trained.chance == first.trained.chance
    band_retrained = _segment_bands(second, second.score(later.frame).labels)
    assert (band_retrained >= band_now).all()
    assert not (scored_now.at_risk & (band_retrained == Band.ACTIVE)).any()


def test_customers_older_than_anyone_at_training_are_not_called_active(tmp_path):
    from conftest import shop_orders

    orders = shop_orders(77, customers=500, days=60, gap_days=10)  # a young shop: two months of orders
    path = tmp_path / "young.csv"
    orders.to_csv(path, index=False)
    src = source_from_spec(path, customer_col="customer", order_col="order", date_col="date", amount_col="amount")
    service = SegmentService(ModelStore(tmp_path / "art"))
    train(src, service.store, k=6)
    served = service.served()
    a_year_later = load_rfm(src, as_of=dt.date.fromisoformat(served.info.snapshot_date) + dt.timedelta(days=400))
    scored = served.score(a_year_later.frame)
    by = served.trained.by_cluster()
    own_band = served.terms.bands(a_year_later.frame["recency"], a_year_later.frame["occasions"])
    assert (np.array([int(by[c].band) for c in scored.labels]) == own_band).all()
    assert {by[c].base for c in scored.labels} <= {"Lost", "Hibernating"}
    ans = served.predict(parse_rfm("900 1 50"))
    assert ans.base == "Lost" and ans.band == "lost"
