"""Readable, unique names, and what changed since the previous model."""

from __future__ import annotations

import numpy as np
from conftest import shop_table, terms_with

from segmentation.model.naming import Candidate, changes, match, qualified_names
from segmentation.model.terms import Band, Freq, Spend
from segmentation.serving.store import ModelStore
from segmentation.serving.training import fit, train


def _terms():
    return terms_with((30, 90, 200), currency="$")


def _cand(cluster, base, band=Band.LOST, freq=Freq.ONE_TIME, spend=Spend.MID, medians=(300, 1, 50)):
    center = tuple(float(np.log1p(v)) for v in medians)  # a stand-in for the standardised space
    return Candidate(cluster, base, band, freq, spend, medians, center)


def test_qualifiers_are_words_chosen_where_clusters_differ():
    t = _terms()
    names = qualified_names(
        [
            _cand(0, "At Risk", Band.LAPSING),
            _cand(1, "At Risk", Band.LAPSED),
            _cand(2, "Champions", Band.ACTIVE),
        ],
        t,
    )
    assert names == {0: "At Risk — lapsing", 1: "At Risk — lapsed", 2: "Champions"}
    names = qualified_names(
        [_cand(0, "Lost", freq=Freq.REPEAT), _cand(1, "Lost", spend=Spend.HIGH), _cand(2, "Lost", spend=Spend.LOW)], t
    )
    assert names == {
        0: "Lost — repeat buyers",
        1: "Lost — one-time buyers, high spend",
        2: "Lost — one-time buyers, low spend",
    }  # the kind of buyer first, then within it
    names = qualified_names([_cand(0, "Lost", spend=Spend.MID), _cand(1, "Lost", spend=Spend.HIGH)], t)
    assert names == {0: "Lost — mid spend", 1: "Lost — high spend"}


def test_comparatives_then_typical_values_when_words_do_not_tell_them_apart():
    t = _terms()
    names = qualified_names([_cand(i, "Lost", medians=(300, 1, 20 + 10 * i)) for i in range(3)], t)
    assert names == {0: "Lost — lowest spend", 1: "Lost — middle spend", 2: "Lost — highest spend"}
    many = qualified_names([_cand(i, "Lost", medians=(300 + i, 1, 100 + 37 * i)) for i in range(7)], t)
    assert len(set(many.values())) == 7 and all(
        n.startswith("Lost — typically") and "spend $" in n for n in many.values()
    )
    assert not any("tier" in n or "group" in n for n in many.values())
    # equal typical values are never put in an order
    same = qualified_names([_cand(i, "Lost", medians=(300, 1, 50 + i)) for i in range(2)], t)
    assert same == {0: "Lost — lower spend", 1: "Lost — higher spend"}
    tied = qualified_names(
        [
            _cand(0, "Lost", medians=(300, 1, 50)),
            _cand(1, "Lost", medians=(310, 1, 50)),
            _cand(2, "Lost", medians=(300, 1, 60)),
        ],
        t,
    )
    assert len(set(tied.values())) == 3 and not any(w in n for n in tied.values() for w in ("est ", "lower"))


def test_a_spend_level_is_only_named_when_two_thirds_are_at_it():
    t = _terms()
    mixed = [
        Candidate(0, "Lost", Band.LOST, Freq.ONE_TIME, Spend.LOW, (300, 1, 40), (0, 0, 1), 0.55),
        Candidate(1, "Lost", Band.LOST, Freq.ONE_TIME, Spend.MID, (300, 1, 90), (0, 0, 2), 0.9),
    ]
    assert qualified_names(mixed, t) == {0: "Lost — lower spend", 1: "Lost — higher spend"}


def test_matching_pairs_clusters_by_their_centres():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 3))
    perm = rng.permutation(6)
    previous = [(f"n{i}", c) for i, c in enumerate(centres)]
    current = [(f"n{i}", centres[i] + 0.01) for i in perm]
    assert sorted(match(previous, current)) == sorted((int(p), j) for j, p in enumerate(perm))


def test_changes_report_renames_appearances_and_disappearances():
    c = np.eye(3)
    previous = [("Need Attention", c[0]), ("Hibernating", c[1]), ("Lost", c[2])]
    current = [("At Risk", c[0] + 0.05), ("Hibernating", c[1]), ("Lost", c[2]), ("Champions", np.ones(3) * 5)]
    ch = changes("v0001", previous, current)
    assert ch.renamed == (("Need Attention", "At Risk"),)
    assert ch.appeared == ("Champions",) and ch.vanished == ()
    assert "Renamed: Need Attention → At Risk" in ch.lines()[0]
    same = changes("v0001", previous, previous)
    assert not same.any and same.lines() == ["Same segment names as before."]


def test_a_retrain_on_the_same_data_keeps_every_name(tmp_path):
    table = shop_table(tmp_path, 31)
    store = ModelStore(tmp_path / "art")
    from segmentation.data.spec import source_from_spec

    src = source_from_spec(
        tmp_path / "shop-31.csv", customer_col="customer", order_col="order", date_col="date", amount_col="amount"
    )
    _, first = train(src, store, k=9)
    version, second = train(src, store, k=9, seed=5)
    assert second.changes is not None and second.changes.previous_version == "v0001"
    assert not second.changes.any
    assert [s.name for s in first.segments] == [s.name for s in second.segments]
    assert fit(table, k=9)[0].changes is None


def test_a_typical_order_count_is_never_half_an_order():
    from segmentation.model.segments import _orders

    assert _orders(2.0) == "2 orders" and _orders(1.0) == "1 order" and _orders(2.5) == "2–3 orders"
