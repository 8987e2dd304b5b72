"""The typed, immutable served model: one version per answer, the same answers everywhere."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import shop_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.data.spec import source_from_spec
from segmentation.errors import InputError
from segmentation.model import definitions as d
from segmentation.model.definitions import BY_NAME
from segmentation.serving.answers import fits_definition
from segmentation.serving.inputs import RFM, parse_rfm
from segmentation.serving.served import ServedModel
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    table = shop_table(tmp, 41, customers=800)
    src = source_from_spec(
        tmp / "shop-41.csv", customer_col="customer", order_col="order", date_col="date", amount_col="amount"
    )
    service = SegmentService(ModelStore(tmp / "art"))
    train(src, service.store, k=8)
    return service, table, src


def test_the_served_model_is_frozen_and_pinned_until_current_moves(shop, tmp_path):
    service, _, src = shop
    served = service.served()
    assert isinstance(served, ServedModel) and service.served() is served
    with pytest.raises(dataclasses.FrozenInstanceError):
        served.version = "v9999"  # type: ignore[misc]
    store = ModelStore(tmp_path)
    other = SegmentService(store)
    train(src, store, k=6)
    first = other.served()
    train(src, store, k=7)
    second = other.served()
    assert (first.version, second.version) == ("v0001", "v0002")
    assert first.info.k == 6 and second.info.k == 7  # an answer in flight keeps its version
    assert other.served("v0001").info.k == 6  # pinned: the version a shared answer was given with
    for bad in ("v9999", "../../evil", "/tmp/x", "", "v0001/../v0002"):
        with pytest.raises(InputError, match="not kept any more"):
            other.served(bad)


def test_predict_agrees_with_scoring(shop):
    service, _, _ = shop
    served = service.served()
    rng = np.random.default_rng(3)
    for r, f, m in zip(rng.integers(0, 700, 200), rng.integers(1, 12, 200), rng.uniform(5, 3000, 200)):
        ans = served.predict(parse_rfm(f"{r} {f} {m:.2f}"))
        profile = pd.DataFrame(
            {
                "customer_id": ["x"],
                "recency": [r],
                "frequency": [f],
                "monetary": [round(m, 2)],
                "occasions": [f],
                # a typed profile's own rhythm is unknown: its orders are taken to be the shop's return time apart
                "gap": [float(served.terms.return_time) if f >= 2 else np.nan],
            }
        )
        label = served.score(profile).labels[0]
        nearest = ans.nearest or (ans.numbers_of if ans.own_name else ans.segment)
        assert nearest == served.segment(label).name  # scoring puts a customer in the nearest segment
        assert ans.model_version == served.version
        if not ans.nearest and not ans.own_name:
            assert ans.cluster == label and ans.definition == served.segment(label).definition


def test_stored_at_risk_equals_scoring_the_training_data(shop):
    service, table, _ = shop
    served = service.served()
    fresh = served.at_risk(served.score(table.frame), as_of=served.info.snapshot_date)
    stored = served.at_risk()
    assert stored == fresh and stored.model_version == served.version and stored.customers > 0


def test_exports_write_the_one_csv_layout(shop, tmp_path):
    service, table, _ = shop
    served = service.served()
    names, n = served.export_at_risk(tmp_path / "risk.csv")
    rows = list(csv.DictReader(open(tmp_path / "risk.csv")))
    assert n == len(rows) == served.at_risk().customers
    assert {r["at_risk"] for r in rows} == {"yes"}
    assert sorted(set(r["segment"] for r in rows)) == sorted(names)
    spend = [float(r["monetary"]) for r in rows]
    assert spend == sorted(spend, reverse=True)
    scored = served.score(table.frame)
    n2 = served.export_at_risk(tmp_path / "fresh.csv", scored=scored)[1]
    assert open(tmp_path / "fresh.csv").read() == open(tmp_path / "risk.csv").read() and n2 == n
    seg = served.trained.segments[0]
    _, n3 = served.export([seg], tmp_path / "seg.csv")
    assert n3 == seg.customers
    with pytest.raises(InputError, match="is a folder"):
        served.export([seg], tmp_path)


def test_customer_answers_show_their_numbers_and_the_segments(shop):
    service, table, _ = shop
    served = service.served()
    row = table.frame.sort_values("occasions").iloc[-1]
    ans = served.customer(row["customer_id"])
    assert ans.purchase_days == row["occasions"] and ans.usual_gap == pytest.approx(row["gap"])
    seg = served.segment(ans.cluster)
    assert ans.typical == seg.typical(served.terms) and "typically" in ans.typical
    assert set(ans.as_json()) >= {"customer_id", "segment", "definition", "typical", "at_risk", "model_version"}
    with pytest.raises(InputError, match="No customer 'nobody'"):
        served.customer("nobody")


def test_each_answer_says_whether_the_customer_meets_the_definition(shop):
    """A segment is named for the majority of its customers; the answer to one customer says
    whether they are among them, and per segment those answers add up to the stored fit."""
    from segment_cli.text import answer

    service, table, _ = shop
    served = service.served()
    meets: dict[int, list[bool]] = {}
    for cid in table.frame["customer_id"]:
        ans = served.customer(cid)
        meets.setdefault(ans.cluster, []).append(ans.fits_definition)
        assert ans.as_json()["fits_definition"] is ans.fits_definition
        assert (ans.outside is None) is ans.fits_definition
    outsiders = 0
    for cluster, flags in meets.items():
        seg = served.segment(cluster)
        assert np.mean(flags) == pytest.approx(seg.check.fit, abs=1e-9), seg.name
        outsiders += flags.count(False)
    assert outsiders, "the shop has customers outside their segment's definition"
    cid = next(c for c in table.frame["customer_id"] if not served.customer(c).fits_definition)
    ans = served.customer(cid)
    assert f"This customer does not meet it: {ans.segment} is the segment nearest" in answer(ans, served.terms)
    assert f"as {1 - ans.fit:.0%} of its customers do not" in ans.outside


@pytest.fixture(scope="module", params=["sample", "shop"])
def served_sample(request, trained, shop):
    return SegmentService(ModelStore(trained)).served() if request.param == "sample" else shop[0].served()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    r=st.integers(0, 900),
    f=st.integers(1, 12),
    m=st.floats(1, 5_000, allow_nan=False),
)
def test_a_profile_is_answered_with_a_segment_whose_definition_it_meets(served_sample, r, f, m):
    p = served_sample.predict(RFM(r, f, m))
    terms = served_sample.terms
    by_cluster = served_sample.trained.by_cluster()
    definition = BY_NAME[p.base] if p.own_name else by_cluster[p.cluster].defined_by
    assert p.definition == definition.text(terms)  # the definition shown is the one checked
    segments = [s for s in served_sample.trained.segments if s.customers]
    meets = [s for s in segments if fits_definition(terms, s.defined_by, r, f, m, p.at_risk)]
    if not p.fits_definition:  # only when no segment's definition is met, and its qualifier is why
        assert not meets and "does not meet it" in p.outside
        assert p.base == d.name_for_profile(*_levels(terms, r, f, m), p.at_risk)
        return
    assert fits_definition(terms, definition, r, f, m, p.at_risk), (p.segment, p.definition)
    names = {s.name for s in served_sample.trained.segments}
    if p.own_name:  # a name from the definitions no segment carries; the numbers are the nearest segment's
        assert p.segment not in names and p.numbers_of in names and p.numbers_of in p.outside
        assert not meets and not [s for s in segments if s.base == p.segment]  # "the majority of no segment"
    else:
        assert p.segment in names and (p.nearest is None or p.nearest in p.outside)


def _levels(terms, r, f, m):
    from segmentation.model.terms import Band, Freq, Spend

    return Band(terms.bands([r], [f])[0]), Freq(terms.freqs([f])[0]), Spend(terms.spends([m])[0])


def test_a_share_reads_the_same_everywhere_and_is_never_zero_when_someone_is_in_it():
    from segment_cli import text
    from segmentation.serving.answers import share_text

    assert share_text(0.0001) == "<0.1%" and share_text(0.0) == "0.0%" and share_text(0.123) == "12.3%"
    assert text.share is share_text  # the CLI, the bot and the report all format shares with it


def test_a_model_saved_before_data_specs_retrains_on_the_data_it_recorded(shop, monkeypatch):
    service, _, src = shop
    served = service.served()
    legacy_info = dataclasses.replace(served.info, data=str(src.path))
    object.__delattr__(legacy_info, "data_spec")  # as unpickled from a model saved before the field
    legacy = dataclasses.replace(served, trained=dataclasses.replace(served.trained, info=legacy_info))
    monkeypatch.setattr(service, "served", lambda version=None: legacy)
    assert legacy.info.data_spec is None and "data_spec" not in legacy.info.__dict__
    assert service._own_spec(None) == (str(src.path), f"the data of {served.version}")


def test_a_relative_data_path_is_recorded_and_described_absolute(tmp_path, monkeypatch, sample_folder):
    from segmentation.data.spec import SourceOptions, open_data

    monkeypatch.chdir(sample_folder.parent)
    opened = open_data(sample_folder.name, SourceOptions(), tmp_path)
    assert opened.source.describe() == f"Olist folder {sample_folder}" and opened.spec == str(sample_folder)
