"""The chance to buy again: learned from earlier windows, calibrated, and the same in SQL as in NumPy."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from segmentation.model import chance as chance_mod


def _windows(rng, n: int, cutoffs: list[dt.date], truth) -> pd.DataFrame:
    """Customer-windows with a known chance: ``truth(recency, occasions, gap)``."""
    occasions = np.where(rng.random(n) < 0.6, 1, 1 + rng.geometric(0.4, n))
    gap = np.where(occasions > 1, rng.gamma(2.0, 20.0, n) + 1, np.nan)
    recency = rng.integers(0, 400, n).astype(float)
    tenure = recency + np.where(occasions > 1, gap * (occasions - 1), 0.0)
    monetary = np.round(rng.lognormal(4, 0.7, n) * occasions, 2)
    p = truth(recency, occasions, gap)
    return pd.DataFrame(
        {
            "recency": recency,
            "occasions": occasions,
            "monetary": monetary,
            "tenure": tenure,
            "gap": gap,
            "returned": rng.random(n) < p,
            "cutoff": [cutoffs[i % len(cutoffs)] for i in range(n)],
            "p": p,
        }
    )


def _truth(recency, occasions, gap):
    """One-time buyers fade with recency; repeat buyers return unless long overdue for their rhythm."""
    overdue = recency / (1 + np.nan_to_num(gap, nan=30.0))
    one = 0.08 * np.exp(-recency / 90)
    rep = 0.85 * np.exp(-overdue / 2.5) + 0.05
    return np.where(occasions >= 2, rep, one)


CUTOFFS = [dt.date(2024, 6, 1), dt.date(2024, 5, 1), dt.date(2024, 4, 1)]


def _fit(frame: pd.DataFrame, horizon: int = 90):
    return chance_mod.fit(
        frame["recency"],
        frame["occasions"],
        frame["monetary"],
        frame["tenure"],
        frame["gap"],
        frame["returned"],
        frame["cutoff"],
        horizon,
        CUTOFFS,
    )


def test_the_chance_is_calibrated_on_a_known_return_process():
    rng = np.random.default_rng(1)
    model = _fit(_windows(rng, 60_000, CUTOFFS, _truth))
    test = _windows(np.random.default_rng(2), 40_000, CUTOFFS, _truth)
    p = model.predict(test["recency"], test["occasions"], test["monetary"], test["tenure"], test["gap"])
    y = test["returned"].to_numpy(float)
    order = np.argsort(p)
    for part in np.array_split(order, 10):  # every decile within 2 points of what happened
        assert abs(p[part].mean() - y[part].mean()) < 0.02
    # and close to the true chance itself, customer by customer on average
    assert np.abs(p - test["p"]).mean() < 0.02
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) >= roc_auc_score(y, test["p"]) - 0.01  # ranks nearly as well as the truth


def test_each_part_chooses_its_inputs_on_the_latest_window():
    rng = np.random.default_rng(3)
    model = _fit(_windows(rng, 30_000, CUTOFFS, _truth))
    # the repeat buyers' rhythm matters here: an input that reads it is chosen
    assert "due" in model.repeat.inputs or "alive" in model.repeat.inputs
    assert model.one_time.inputs[:3] == ("r", "r2", "r3")
    assert model.rows == 30_000 and model.horizon == 90 and model.cutoffs == tuple(CUTOFFS)


def test_a_part_with_one_outcome_only_predicts_its_share():
    rng = np.random.default_rng(4)
    frame = _windows(rng, 500, CUTOFFS, lambda r, o, g: np.where(o >= 2, 0.5, 0.0))
    model = _fit(frame)
    p = model.predict([10, 300], [1, 1], [50, 50], [10, 300], [np.nan, np.nan])
    assert p[0] == p[1] < 0.01  # no one-time buyer came back: a small, constant chance


def test_now_and_right_after_are_the_same_customer_at_two_ages():
    rng = np.random.default_rng(5)
    model = _fit(_windows(rng, 20_000, CUTOFFS, _truth))
    r, o, m, g = np.array([120.0]), np.array([4.0]), np.array([300.0]), np.array([20.0])
    assert model.now(r, o, m, g)[0] == model.predict(r, o, m, r + 60.0, g)[0]  # tenure: recency + 3 gaps
    assert model.right_after(r, o, m, g)[0] == model.predict([0.0], o, m, [60.0], g)[0]
    assert model.right_after(r, o, m, g)[0] > model.now(r, o, m, g)[0]
    # a lookup's one evaluation of both ages equals the two (one-time buyers, repeat buyers, no gap)
    for one in ((120.0, 4.0, 300.0, 20.0), (40.0, 1.0, 80.0, np.nan), (9.0, 2.0, 50.0, np.nan)):
        rr, oo, mm, gg = ([x] for x in one)
        assert model.now_and_right_after(*one) == (model.now(rr, oo, mm, gg)[0], model.right_after(rr, oo, mm, gg)[0])


def test_one_part_or_both_give_the_same_chances():
    """Customers of one kind only are scored by their part alone (a lookup); mixed, by both."""
    rng = np.random.default_rng(8)
    frame = _windows(rng, 20_000, CUTOFFS, _truth)
    model = _fit(frame)
    cols = [frame[c].to_numpy() for c in ("recency", "occasions", "monetary", "tenure", "gap")]
    mixed = model.predict(*cols)
    for kind in (frame["occasions"] >= 2, frame["occasions"] < 2):
        idx = np.flatnonzero(kind.to_numpy())
        assert 0 < len(idx) < len(frame)
        assert np.array_equal(model.predict(*(c[idx] for c in cols)), mixed[idx])


def test_the_chance_in_sql_equals_numpy_in_duckdb():
    import duckdb

    rng = np.random.default_rng(6)
    model = _fit(_windows(rng, 20_000, CUTOFFS, _truth))
    pts = _points(rng)
    con = duckdb.connect()
    con.register("customers", pts)
    got = con.execute(
        f"SELECT {model.sql()} AS p, {model.sql_right_after()} AS p0 FROM customers ORDER BY i"
    ).fetchnumpy()
    args = (pts["recency"], pts["occasions"], pts["monetary"], pts["gap"])
    # the same formula; DuckDB's and NumPy's exp() may round the last bit differently
    np.testing.assert_allclose(got["p"], model.now(*args), rtol=1e-13, atol=0)
    np.testing.assert_allclose(got["p0"], model.right_after(*args), rtol=1e-13, atol=0)


def _points(rng, n: int = 3_000) -> pd.DataFrame:
    occasions = rng.integers(1, 12, n)
    return pd.DataFrame(
        {
            "i": np.arange(n),
            "recency": rng.integers(0, 900, n),
            "occasions": occasions,
            "monetary": np.round(rng.lognormal(4, 1, n), 2),
            "gap": np.where(occasions > 1, rng.uniform(1, 200, n), np.nan),
        }
    )


def test_inputs_beyond_the_training_range_are_clipped_not_extrapolated():
    part = chance_mod.Part(("t",), 0.5, (2.0,), (0.0,), (5.0,), 100, 10)
    x = lambda tenure: chance_mod.Inputs(*(np.array([v], dtype=float) for v in (10, 2, 50, tenure, 5)))  # noqa: E731
    assert part.z(x(1e9))[0] == part.z(x(np.expm1(5.0) + 1_000))[0] == 0.5 + 2.0 * 5.0
    assert part.z(x(0))[0] == 0.5
    sql = part.sql("CAST(recency AS DOUBLE)", "tenure")
    assert "LEAST(GREATEST(LN(1 + tenure)" in sql


def test_extreme_customers_get_a_finite_chance():
    rng = np.random.default_rng(7)
    model = _fit(_windows(rng, 5_000, CUTOFFS, _truth))
    p = model.predict([0, 1e6, 5], [1, 500, 2], [0.0, 1e9, 10], [0, 1e7, 5], [np.nan, 1.0, 0.0])
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_the_chance_is_the_same_to_the_bit_whatever_the_rows_evaluated_at_once(monkeypatch):
    """Large shops are evaluated a chunk of rows at a time (the inputs' temporaries of 9M
    customers at once were the training's peak): every row gets exactly the value it gets alone."""
    from segmentation.model import chance as chance_mod

    rng = np.random.default_rng(12)
    model = _fit(_windows(rng, 20_000, CUTOFFS, _truth))
    n = 5_003
    occasions = np.where(rng.random(n) < 0.7, 1, rng.integers(2, 12, n)).astype(np.int32)
    gap = np.where(occasions > 1, rng.random(n) * 150, np.nan)
    recency = rng.integers(0, 700, n).astype(np.int32)
    monetary = np.round(rng.lognormal(4, 1, n), 2)
    whole = model.now(recency, occasions, monetary, gap)
    monkeypatch.setattr(chance_mod, "PREDICT_ROWS", 97)  # chunks that split repeat and one-time rows unevenly
    chunked = model.now(recency, occasions, monetary, gap)
    assert np.array_equal(whole.view(np.int64), chunked.view(np.int64))
    one = [
        model.now(recency[i : i + 1], occasions[i : i + 1], monetary[i : i + 1], gap[i : i + 1])[0] for i in (0, 4_999)
    ]
    assert one == [whole[0], whole[4_999]]
