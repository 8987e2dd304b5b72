"""No promotion without a purchase: time passing alone never makes a customer look more active."""

from __future__ import annotations

import datetime as dt

import numpy as np
from conftest import shop_table
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.service import SegmentService
from segmentation.sources import source_from_spec
from segmentation.store import ModelStore
from segmentation.terms import Band
from segmentation.training import train


def _segment_bands(served, labels):
    by = served.trained.by_cluster()
    return np.array([int(by[c].band) for c in labels])


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 5000), days=st.integers(1, 120), k=st.integers(4, 14),
       gap=st.floats(7, 90), one_time=st.floats(0.3, 0.95))
def test_scoring_or_retraining_later_never_promotes_anyone(tmp_path_factory, seed, days, k, gap, one_time):
    tmp = tmp_path_factory.mktemp("inv")
    now = shop_table(tmp, seed, gap_days=gap, one_time_share=one_time)
    src = source_from_spec(tmp / f"shop-{seed}.csv", customer_col="customer", order_col="order",
                           date_col="date", amount_col="amount")
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
    assert second.terms == first.terms  # the terms do not drift with the snapshot date
    band_retrained = _segment_bands(second, second.score(later.frame).labels)
    assert (band_retrained >= band_now).all()
    assert not (scored_now.at_risk & (band_retrained == Band.ACTIVE)).any()
