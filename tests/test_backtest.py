"""``segment backtest``: models trained as of a cut-off, judged on the orders that followed."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, shop_orders

from segmentation.analysis import backtest
from segmentation.data.sources import opened
from segmentation.data.spec import source_from_spec
from segmentation.errors import DataError

FLAGS = dict(customer_col="customer", order_col="order", date_col="date", amount_col="amount")
CUTOFF = dt.date(2024, 2, 1)


def _shop(tmp_path, orders: pd.DataFrame, name: str):
    path = tmp_path / f"{name}.csv"
    orders.to_csv(path, index=False)
    return source_from_spec(path, **FLAGS)


def _run(source, horizon: int = 60):
    with opened(source, None) as src:
        return backtest.run_cutoff(src, CUTOFF, horizon, k=8, seed=42, say=lambda _: None, last=dt.date(2099, 1, 1))


def test_an_order_after_the_cut_off_changes_nothing_the_model_learned(tmp_path):
    orders = shop_orders(31, customers=1_500, days=600)
    before, model_before = _run(_shop(tmp_path, orders, "before"))
    later = [o for o in orders.itertuples() if dt.date.fromisoformat(o.date) > CUTOFF]
    assert later  # the history goes on after the cut-off
    planted = pd.DataFrame(
        [
            # customers known at the cut-off buy again the very next day, and a stranger appears
            *[
                (c, f"P{i}", (CUTOFF + dt.timedelta(days=1)).isoformat(), 999.0)
                for i, c in enumerate(orders["customer"][:40])
            ],
            ("NEWCOMER", "P999", (CUTOFF + dt.timedelta(days=2)).isoformat(), 50.0),
        ],
        columns=orders.columns,
    )
    after, model_after = _run(_shop(tmp_path, pd.concat([orders, planted]), "after"))
    # everything learned as of the cut-off is the same to the last bit
    assert model_after.terms == model_before.terms
    assert model_after.chance == model_before.chance
    assert model_after.rule == model_before.rule
    np.testing.assert_array_equal(model_after.model.cluster_centers_, model_before.model.cluster_centers_)
    assert [(s.name, s.customers, s.future) for s in model_after.segments] == [
        (s.name, s.customers, s.future) for s in model_before.segments
    ]
    assert model_after.at_risk == model_before.at_risk and after.customers == before.customers
    # only what happened after it differs
    assert after.returned > before.returned
    assert sum(s.future.customers for s in after.segments) == after.customers  # the newcomer is not scored


@pytest.mark.integration  # the CLI and the store end to end
def test_the_backtest_json_holds_the_figures_it_prints(tmp_path, sample_folder):
    r = run_cli("--artifacts", str(tmp_path), "-q", "backtest", "--data", str(sample_folder), "--json")
    d = json.loads(r.out)
    assert r.code == (1 if d["claims_failed"] else 0), r.err  # like validate: exit 1 when the future disagrees
    # each model looks ahead its own horizon, as served
    assert d["horizon_days"] is None and d["cutoffs"] and "as served" in d["horizon_reason"]
    for c in d["cutoffs"]:
        assert c["horizon_days"] >= 7
        assert set(c["auc"]) == set(backtest.SCORES)
        assert all(v is None or 0 <= v <= 1 for v in c["auc"].values())
        assert c["customers"] == sum(s["customers"] for s in c["segments"])
        assert c["bought_again"] == sum(s["returned"] for s in c["segments"])
        assert c["rule_cells"] + c["kmeans_segments"] == len(c["segments"])
        cal = c["calibration"]
        assert len(cal["deciles"]) == 10 and 0 <= cal["ece"] < 0.05
        assert {"active", "at_risk", "lapsing", "lapsed", "lost"} <= set(c["tiers"])
        assert all({"claim", "passed", "detail", "clear"} == set(x) for x in c["claims"])
    dates = [dt.date.fromisoformat(c["cutoff"]) for c in d["cutoffs"]]
    assert dates == sorted(dates, reverse=True)  # evenly spaced, the latest first
    assert len({(a - b).days for a, b in zip(dates, dates[1:])}) <= 1
    wrong = {(c["cutoff"], x["claim"], x["clear"]) for c in d["cutoffs"] for x in c["claims"] if x["passed"] is False}
    assert {(f["cutoff"], f["claim"]) for f in d["claims_failed"]} == {(c, x) for c, x, clear in wrong if clear}
    assert {(f["cutoff"], f["claim"]) for f in d["claims_within_chance"]} == {(c, x) for c, x, clr in wrong if not clr}
    one = run_cli(
        "--artifacts", str(tmp_path), "-q", "backtest", "--data", str(sample_folder), "--json", "--horizon", "30"
    )
    assert json.loads(one.out)["horizon_days"] == 30
    text = run_cli("--artifacts", str(tmp_path), "-q", "backtest", "--data", str(sample_folder)).out
    assert "Who buys again" in text and "Calibration of the chance" in text and "rule cell" in text
    assert not (tmp_path / "models").exists()  # a backtest saves nothing


def test_a_cut_off_too_late_or_too_early_is_one_clear_line(tmp_path, sample_folder):
    late = run_cli(
        "--artifacts", str(tmp_path), "-q", "backtest", "--data", str(sample_folder), "--as-of", "2024-12-20"
    )
    assert late.code != 0 and "past the end of the data" in late.err and "\n" not in late.err.strip()
    both = run_cli(
        "--artifacts",
        str(tmp_path),
        "-q",
        "backtest",
        "--data",
        str(sample_folder),
        "--as-of",
        "2024-06-01",
        "--cutoffs",
        "2",
    )
    assert both.code == 2 and "not both" in both.err
    early = run_cli(
        "--artifacts", str(tmp_path), "-q", "backtest", "--data", str(sample_folder), "--as-of", "2023-01-08"
    )
    assert early.code != 0 and "days of history to learn from" in early.err
    with pytest.raises(DataError, match="too few to backtest"):
        backtest.run(source_from_spec(sample_folder), horizon=2_000)


def test_the_auc_difference_and_its_interval():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(4_000) < 0.3
    good = y + rng.normal(0, 1.0, len(y))
    worse = y + rng.normal(0, 2.0, len(y))
    diff, lo, hi = backtest.auc_difference(y, good, worse)
    assert diff == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, worse))
    assert 0 < lo < diff < hi  # clearly better, and the interval says so
    same, lo, hi = backtest.auc_difference(y, good, good)
    assert same == 0 and lo == hi == 0
    groups = np.round(good)  # ties count half, as in the AUC itself
    assert backtest.auc_difference(y, groups, worse)[0] == pytest.approx(
        roc_auc_score(y, groups) - roc_auc_score(y, worse)
    )
