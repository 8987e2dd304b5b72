"""Churn risk: one per-customer definition on the chance to buy again, the same whatever K, the
seed or the names."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import reference
from conftest import shop_table, terms_with
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation import runtime
from segmentation.errors import PlaybookError
from segmentation.model import playbook
from segmentation.model.atrisk import AtRiskRule, expected_value
from segmentation.serving.training import fit


def _rule(**kw):
    return AtRiskRule(floor=0.05, floor_repeat=0.10, ceiling=0.30, **kw)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 400),
            st.integers(1, 30),
            st.floats(1, 200),
            st.floats(0.001, 0.999),
            st.floats(0.001, 0.999),
        ),
        min_size=1,
        max_size=50,
    ),
    repeat=st.booleans(),
    fall=st.floats(0.05, 0.95),
    spend=st.sampled_from(["high", "mid", "none"]),
    bounds=st.booleans(),
)
def test_the_rule_matches_its_written_definition(rows, repeat, fall, spend, bounds):
    terms = terms_with((30, 90, 200), lost=(200, 300))
    rule = AtRiskRule(repeat, spend, fall)
    if bounds:
        rule = replace(rule, floor=0.05, floor_repeat=0.10, ceiling=0.30)
    r, o, m, p, p0 = (np.array(c, dtype=float) for c in zip(*rows))
    flags = rule.flags(terms, r, o, m, p, p0)
    assert flags.tolist() == [reference.at_risk(rule, terms, *row) for row in zip(r, o, m, p, p0)]
    from segmentation.model import atrisk as atrisk_mod

    saved, atrisk_mod.FLAG_ROWS = atrisk_mod.FLAG_ROWS, 3  # a large shop is flagged a chunk at a time
    try:
        assert rule.flags(terms, r, o, m, p, p0).tolist() == flags.tolist()
    finally:
        atrisk_mod.FLAG_ROWS = saved


def test_the_classic_cases():
    terms, rule = terms_with((30, 90, 200), lost=(200, 300)), _rule()
    f = lambda r, o, m, p, p0: bool(rule.flags(terms, [r], [o], [m], [p], [p0])[0])  # noqa: E731
    assert f(60, 3, 50, 0.20, 0.60)  # a repeat buyer slipping from 60% to 20%: between the floor and the ceiling
    assert not f(60, 3, 50, 0.45, 0.60)  # still likelier than the ceiling (most active customers)
    assert not f(60, 3, 50, 0.08, 0.60)  # below the repeat buyers' floor: as good as lapsed
    assert not f(60, 3, 50, 0.20, 0.22)  # their odds have hardly fallen: that is how they always were
    assert not f(25, 3, 50, 0.20, 0.60)  # not yet past the return time
    assert f(250, 3, 50, 0.20, 0.60)  # repeat buyers are lost only after 300 days here
    assert not f(301, 3, 50, 0.20, 0.60)  # lost, not at risk
    assert f(60, 1, terms.spend_high_from, 0.06, 0.20)  # a big one-time spender going cold
    assert not f(60, 1, terms.spend_high_from - 1, 0.06, 0.20)  # not worth keeping by spend alone
    assert not f(91, 1, terms.spend_high_from, 0.06, 0.20)  # a one-time buyer past the return window: as lapsed
    assert not f(60, 2, 50, np.nan, np.nan)  # no chance learned: nobody is flagged
    text = rule.text(terms, 120)
    assert "fallen by a third" in text and "within 120 days" in text and "30%" in text and "10%" in text
    assert "too short" in rule.text(terms, None)


def test_at_risk_does_not_depend_on_k_or_the_seed(tmp_path):
    table = shop_table(tmp_path, 21)
    runs = [fit(table, k=k, seed=seed)[1]["at_risk"] for k, seed in ((6, 42), (11, 42), (14, 42), (11, 3))]
    for other in runs[1:]:
        assert (other == runs[0]).all()
    assert runs[0].sum() > 0


def test_summary_totals_and_by_segment(tmp_path):
    table = shop_table(tmp_path, 22)
    trained, assignments = fit(table, k=8)
    a = trained.at_risk
    risky = assignments[assignments["at_risk"]]
    value = expected_value(risky["chance"], risky["monetary"], risky["occasions"])
    everyone = expected_value(assignments["chance"], assignments["monetary"], assignments["occasions"])
    assert a.customers == len(risky) and a.revenue == pytest.approx(value.sum())
    assert a.past_spend == pytest.approx(risky["monetary"].sum()) and a.horizon == trained.horizon
    assert a.all_customers == len(assignments) and a.all_revenue == pytest.approx(everyone.sum())
    names = {s.cluster: s.name for s in trained.segments}
    expected = risky.groupby("cluster").size()
    assert {s.name: s.customers for s in a.by_segment} == {names[c]: n for c, n in expected.items()}
    assert set(a.as_json()) >= {
        "customers",
        "revenue_at_stake",
        "share_of_customers",
        "share_of_expected_revenue",
        "past_spend",
        "horizon_days",
        "definition",
        "by_segment",
    }
    # each flagged customer's chance is where the rule says, with the numbers the model saved
    rule = trained.rule
    assert rule.floor is not None and rule.ceiling is not None
    assert (risky["chance"] < rule.ceiling).all()


def test_the_rule_is_configured_in_the_playbook(tmp_path):
    text = playbook.DEFAULT_PATH.read_text()
    p = tmp_path / "p.toml"
    p.write_text(
        text.replace('one_time_spend = "high"', 'one_time_spend = "none"').replace("fall = 0.67", "fall = 0.5")
    )
    book = playbook.load(p)
    assert book.at_risk == AtRiskRule(True, "none", 0.5)
    for bad, message in (
        ('one_time_spend = "lots"', "one_time_spend must be"),
        ("fall = 0", "fall must be a share from 0.05 to 0.95"),
        ("fall = true", "fall must be a share"),
        ("repeat_buyers = 1", "repeat_buyers must be true or false"),
        ("surprise = true", "unknown at_risk setting 'surprise'"),
        ("own_gap_multiple = 2.0", "own_gap_multiple is gone"),
    ):
        key = bad.split(" = ")[0]
        lines = [ln for ln in text.splitlines() if not ln.startswith(key + " =")]
        at = lines.index("[at_risk]") + 1
        p.write_text("\n".join(lines[:at] + [bad] + lines[at:]))
        with pytest.raises(PlaybookError, match=message):
            playbook.load(p)
    p.write_text(text.replace("[at_risk]", 'at_risk = ["At Risk"]\n[ignored]'))
    with pytest.raises(PlaybookError, match="at_risk is now a rule"):
        playbook.load(p)


def test_a_retrain_applies_a_changed_rule(tmp_path, monkeypatch):
    table = shop_table(tmp_path, 23)
    before = fit(table, k=6)[0].at_risk
    p = tmp_path / "p.toml"
    p.write_text(playbook.DEFAULT_PATH.read_text().replace('one_time_spend = "high"', 'one_time_spend = "mid"'))
    monkeypatch.setattr(runtime, "_current", runtime.Runtime(playbook=p))  # SEGMENT_PLAYBOOK
    after = fit(table, k=6)[0].at_risk
    assert after.customers >= before.customers and "top 60%" in after.definition
