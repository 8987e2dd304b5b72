"""Churn risk: one per-customer definition, the same whatever K, the seed or the names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import reference
from conftest import shop_table
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation import playbook
from segmentation.atrisk import AtRiskRule
from segmentation.errors import PlaybookError
from segmentation.sources import GapStats
from segmentation.terms import measure
from segmentation.training import fit


def _terms():
    frame = pd.DataFrame({"recency": [1] * 10, "occasions": [1] * 10, "monetary": np.arange(10.0, 110.0, 10.0)})
    return measure(frame, GapStats(30, 90, 200, returning_customers=500, gaps=800))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 600), st.integers(1, 30), st.floats(1, 200), st.floats(0, 150)),
        min_size=1,
        max_size=50,
    ),
    repeat=st.booleans(),
    mult=st.floats(1, 5),
    spend=st.sampled_from(["high", "mid", "none"]),
)
def test_the_rule_matches_its_written_definition(rows, repeat, mult, spend):
    terms, rule = _terms(), AtRiskRule(repeat, mult, spend)
    r, o, g, m = (np.array(c, dtype=float) for c in zip(*rows))
    g[o < 2] = np.nan
    flags = rule.flags(terms, r, o, g, m)
    assert flags.tolist() == [reference.at_risk(rule, terms, *row) for row in zip(r, o, g, m)]


def test_the_classic_cases():
    terms, rule = _terms(), AtRiskRule()
    f = lambda r, o, g, m: bool(rule.flags(terms, [r], [o], [g], [m])[0])  # noqa: E731
    assert f(40, 5, 7, 50)  # a weekly buyer gone for 40 days: past twice their gap and the return time
    assert not f(40, 2, 30, 50)  # within twice their own gap (60 days)
    assert not f(25, 5, 7, 50)  # not yet past the shop's return time
    assert not f(250, 5, 7, 50)  # past the lost cut-off: lost, not at risk
    assert f(95, 3, 80, 50) and not f(85, 3, 80, 50)  # a slow buyer: at the latest past the return window
    assert f(60, 1, np.nan, terms.spend_high_from)  # a big one-time spender going cold
    assert not f(60, 1, np.nan, terms.spend_high_from - 1)
    assert not f(120, 1, np.nan, terms.spend_high_from)  # past the return window
    assert "twice their own usual gap" in rule.text(terms) and "30 days" in rule.text(terms)


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
    assert a.customers == len(risky) and a.revenue == pytest.approx(risky["monetary"].sum())
    assert a.all_customers == len(assignments)
    assert a.share_of_revenue == pytest.approx(risky["monetary"].sum() / assignments["monetary"].sum())
    names = {s.cluster: s.name for s in trained.segments}
    expected = risky.groupby("cluster").size()
    assert {s.name: s.customers for s in a.by_segment} == {names[c]: n for c, n in expected.items()}
    assert set(a.as_json()) >= {
        "customers",
        "revenue",
        "share_of_customers",
        "share_of_revenue",
        "definition",
        "by_segment",
    }


def test_the_rule_is_configured_in_the_playbook(tmp_path):
    text = playbook.DEFAULT_PATH.read_text()
    p = tmp_path / "p.toml"
    p.write_text(
        text.replace('one_time_spend = "high"', 'one_time_spend = "none"').replace(
            "own_gap_multiple = 2.0", "own_gap_multiple = 3"
        )
    )
    book = playbook.load(p)
    assert book.at_risk == AtRiskRule(True, 3.0, "none")
    for bad, message in (
        ('one_time_spend = "lots"', "one_time_spend must be"),
        ("own_gap_multiple = 0", "own_gap_multiple must be a number from 1 to 10"),
        ("repeat_buyers = 1", "repeat_buyers must be true or false"),
        ("surprise = true", "unknown at_risk setting 'surprise'"),
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
    monkeypatch.setenv("SEGMENT_PLAYBOOK", str(p))
    after = fit(table, k=6)[0].at_risk
    assert after.customers > before.customers and "top 60%" in after.definition
