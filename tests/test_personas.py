"""Personas: what each segment buys, how it pays and where it orders from, computed inside the
source's engine at training, equal to a plain pandas reference; optional files are optional."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import reference
from conftest import run_cli, shop_orders

from segmentation.data.kinds import OlistSource
from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.model.personas import Persona, Share, summarise
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train


def _served(store_root):
    return SegmentService(ModelStore(store_root)).served()


def _labels(served, source) -> dict[str, int]:
    frame = load_rfm(source).frame
    return dict(zip(frame["customer_id"], served.score(frame).labels.tolist()))


def _check(persona: Persona | None, want: dict) -> None:
    assert persona is not None
    got_categories = [(s.label, s.share) for s in persona.categories]
    assert [k for k, _ in got_categories] == [k for k, _ in want["categories"]]
    np.testing.assert_allclose([v for _, v in got_categories], [v for _, v in want["categories"]], rtol=1e-9)
    assert persona.payment is not None
    ((want_type, want_share),) = want["payment"]
    assert persona.payment.label == want_type and persona.payment.share == pytest.approx(want_share, rel=1e-9)
    assert persona.instalments == want["instalments"]
    assert [(s.label, round(s.share, 12)) for s in persona.states] == [(k, round(v, 12)) for k, v in want["states"]]


@pytest.fixture(scope="module")
def olist_trained(tmp_path_factory, sample_folder):
    root = tmp_path_factory.mktemp("personas")
    version, trained = train(OlistSource(sample_folder), ModelStore(root), k=8)
    return root, trained


def test_olist_personas_equal_a_pandas_reference(olist_trained, sample_folder):
    root, trained = olist_trained
    served = _served(root)
    sizes = {s.cluster: s.customers for s in trained.all_segments}
    want = reference.olist_personas(sample_folder, _labels(served, OlistSource(sample_folder)), sizes)
    described = [s for s in trained.segments if s.persona is not None]
    assert len(described) == len(trained.segments)  # every segment with customers has one
    for s in trained.segments:
        _check(s.persona, want[s.cluster])
    # stored with the model, so the served one says the same
    assert [s.persona for s in served.segments()] == [s.persona for s in trained.segments]
    # segments differ in what they buy: the generated shop's returning buyers lean to household goods
    tops = {s.persona.categories[0].label for s in trained.segments if s.persona and s.persona.categories}
    assert len(tops) >= 2


def test_large_segments_are_described_from_a_hash_sample_of_their_customers(tmp_path, sample_folder, monkeypatch):
    """Segments of more than ``personas.SAMPLE`` customers are described from the customers whose
    hashed id falls in their first buckets: their personas equal the pandas reference over exactly
    those customers, say how many they stand on, and the segments under it stay whole."""
    import duckdb

    from segmentation.model import personas as persona_mod

    monkeypatch.setattr(persona_mod, "SAMPLE", 400)
    version, trained = train(OlistSource(sample_folder), ModelStore(tmp_path), k=8)
    served = _served(tmp_path)
    sizes = {s.cluster: s.customers for s in trained.all_segments}
    keep = persona_mod.sampled_buckets(sizes, 400)
    assert keep and any(s.cluster not in keep for s in trained.segments)  # some sampled, some whole
    labels = _labels(served, OlistSource(sample_folder))
    ids = list(labels)
    con = duckdb.connect()
    buckets = dict(
        con.execute(f"SELECT id, HASH(id) % {persona_mod.BUCKETS} FROM unnest(?) AS t(id)", [ids]).fetchall()
    )
    members = {i: c for i, c in labels.items() if c not in keep or buckets[i] < keep[c]}
    counted = {c: sum(1 for m in members.values() if m == c) for c in sizes}
    want = reference.olist_personas(sample_folder, members, counted)
    for s in trained.segments:
        _check(s.persona, want[s.cluster])
        if s.cluster in keep:
            assert s.persona.sampled == counted[s.cluster] <= s.customers
            assert 250 <= s.persona.sampled <= 650  # about 400
            assert f"from a sample of {counted[s.cluster]:,} of its customers" in s.persona.line()
        else:
            assert s.persona.sampled is None and "sample" not in s.persona.line()


def test_the_whole_shop_weighs_a_sampled_segment_by_its_size():
    """A segment described from a tenth of its customers counts ten times in the whole shop's
    shares (the lifts' yardstick); its own shares are its sample's."""
    rows = [
        ("state", 0, "SP", 0.0, 50),  # 50 of a 100-customer sample of 1,000
        ("state", 0, "RJ", 0.0, 50),
        ("state", 1, "RJ", 0.0, 1000),  # all 1,000 of a segment described whole
    ]
    personas = summarise(*zip(*rows), sizes={0: 1000, 1: 1000}, sampled={0: 100})
    assert [(s.label, s.share) for s in personas[0].states] == [("RJ", 0.5), ("SP", 0.5)]
    assert personas[0].sampled == 100 and personas[1].sampled is None
    # whole shop: SP 500 of 2,000 (25%), RJ 1,500 (75%): segment 1 is RJ ×1.33, segment 0 SP ×2
    assert [(s.label, round(s.lift, 2)) for s in personas[0].more_states] == [("SP", 2.0)]
    assert [(s.label, round(s.lift, 2)) for s in personas[1].more_states] == [("RJ", 1.33)]


def test_the_persona_line_states_its_numbers():
    p = Persona(
        categories=(Share("bed_bath_table", 0.243), Share("housewares", 0.111)),
        payment=Share("credit_card", 0.74),
        instalments=3.0,
        states=(Share("SP", 0.42), Share("RJ", 0.13)),
    )
    assert p.line() == (
        "buys bed bath table 24%, housewares 11% · pays by credit card 74%, typically 3 instalments · "
        "orders from SP 42%, RJ 13%"
    )
    assert Persona(instalments=1.0).line() == "pays in typically 1 instalment"
    assert Persona().empty and not p.empty
    assert p.as_json()["categories"][0] == {"name": "bed_bath_table", "revenue_share": 0.243}


def test_summarise_reads_the_histograms():
    rows = [
        ("category", 0, "toys", 30.0, 3),
        ("category", 0, "auto", 70.0, 2),
        ("payment", 0, "boleto", 20.0, 1),
        ("payment", 0, "credit_card", 80.0, 4),
        ("instalments", 0, "1", 0.0, 2),
        ("instalments", 0, "6", 0.0, 3),
        ("state", 0, "SP", 0.0, 3),
        ("state", 0, "RJ", 0.0, 1),
    ]
    personas = summarise(*zip(*rows), sizes={0: 4})
    p = personas[0]
    assert [(s.label, s.share) for s in p.categories] == [("auto", 0.7), ("toys", 0.3)]
    assert (p.payment.label, p.payment.share) == ("credit_card", 0.8)
    assert p.instalments == 6.0  # 1, 1, 6, 6, 6: the middle one
    assert [(s.label, s.share) for s in p.states] == [("SP", 0.75), ("RJ", 0.25)]


def test_the_extra_files_are_optional(tmp_path, sample_folder):
    """Without items and products: no categories, the rest still; without the state column: no
    states; without the translation: Portuguese names. Never an error."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for stem in ("olist_orders_dataset", "olist_order_payments_dataset", "olist_customers_dataset"):
        shutil.copy(sample_folder / f"{stem}.csv", bare)
    _, trained = train(OlistSource(bare), ModelStore(tmp_path / "m1"), k=6)
    for s in trained.segments:
        assert s.persona is not None and not s.persona.categories and s.persona.payment is not None and s.persona.states
    customers = pd.read_csv(bare / "olist_customers_dataset.csv").drop(columns=["customer_state"])
    customers.to_csv(bare / "olist_customers_dataset.csv", index=False)
    payments = pd.read_csv(bare / "olist_order_payments_dataset.csv")
    payments[["order_id", "payment_sequential", "payment_value"]].to_csv(
        bare / "olist_order_payments_dataset.csv", index=False
    )
    _, trained = train(OlistSource(bare), ModelStore(tmp_path / "m2"), k=6)
    assert all(s.persona is None for s in trained.segments)
    r = run_cli("--artifacts", str(tmp_path / "m2"), "segments")
    assert r.code == 0 and "Persona:" not in r.out
    for stem in ("olist_order_items_dataset", "olist_products_dataset"):
        shutil.copy(sample_folder / f"{stem}.csv", bare)
    _, trained = train(OlistSource(bare), ModelStore(tmp_path / "m3"), k=6)
    names = {c.label for s in trained.segments for c in (s.persona.categories if s.persona else ())}
    assert names and names <= {
        pt for pt, _ in __import__("segmentation.data.sample_catalogue", fromlist=["x"]).CATEGORIES
    } | {"(no category)"}


def test_a_category_column_gives_the_categories(tmp_path):
    """--category-col on order lines: categories by the revenue of the lines with a positive
    amount, equal to a pandas reference; a missing category column is one clear line."""
    rng = np.random.default_rng(3)
    orders = shop_orders(5, customers=900)
    orders["category"] = rng.choice(["Toys", "Garden", "Books", "Kitchen", ""], size=len(orders))
    orders.loc[orders.index[:5], "amount"] = -10.0  # refund lines never count
    path = tmp_path / "lines.csv"
    orders.to_csv(path, index=False)
    flags = dict(customer_col="customer", order_col="order", date_col="date", amount_col="amount")
    source = source_from_spec(path, category_col="category", **flags)
    root = tmp_path / "m"
    _, trained = train(source, ModelStore(root), k=8)
    labels = _labels(_served(root), source)
    lines = orders[orders["amount"] > 0].assign(cluster=orders["customer"].map(labels)).dropna(subset=["cluster"])
    lines["label"] = lines["category"].replace("", np.nan).fillna("(no category)")
    lines["cents"] = (lines["amount"] * 100).round().astype(np.int64)
    for s in trained.segments:
        got = [(c.label, c.share) for c in s.persona.categories]
        by = lines[lines["cluster"] == s.cluster].groupby("label")["cents"].sum()
        want = sorted(((k, v / by.sum()) for k, v in by.items()), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert [k for k, _ in got] == [k for k, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-9)
        assert s.persona.payment is None and not s.persona.states
    column_flags = [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", v)]
    r = run_cli(
        "--artifacts",
        str(tmp_path / "m2"),
        "-q",
        "train",
        "--data",
        str(path),
        "--category-col",
        "genre",
        *column_flags,
    )
    assert r.code != 0 and "no column 'genre'" in r.err and "\n" not in r.err.strip()


def test_personas_in_every_answer(olist_trained, sample_folder):
    root, trained = olist_trained
    seg = trained.segments[0]
    r = run_cli("--artifacts", str(root), "segments")
    assert r.code == 0 and f"Persona: {seg.persona.line()}." in r.out
    r = run_cli("--artifacts", str(root), "segments", "--json")
    assert '"persona"' in r.out and seg.persona.categories[0].label in r.out
    r = run_cli("--artifacts", str(root), "predict", "5", "3", "900")
    assert r.code == 0 and ("Its persona: buys " in r.out or "Persona of the nearest segment: buys " in r.out)


def test_personas_in_slack(bot):
    """/segment segments and /segment customer say what the segment buys, through the signed endpoint."""
    served = bot.ctx.service.served()
    seg = served.segments()[0]
    r = bot.command("segments")
    assert r.status == 200 and f"_Persona:_ {seg.persona.line()}." in r.text
    row = next(iter(served.assignments.members([seg.cluster])))
    r = bot.command(f"customer {row.customer_id}")
    assert r.status == 200 and f"_Persona:_ {seg.persona.line()}." in r.text


def test_a_persona_says_what_is_over_represented_against_the_whole_shop():
    from segmentation.model.personas import summarise

    # two segments; segment 1 buys toys at three times the shop's share, on enough lines
    rows = [
        ("category", 0, "toys", 100.0, 50),
        ("category", 0, "books", 900.0, 400),
        ("category", 1, "toys", 300.0, 40),
        ("category", 1, "books", 200.0, 30),
        ("state", 0, "SP", 0.0, 90),
        ("state", 0, "RJ", 0.0, 10),
        ("state", 1, "SP", 0.0, 45),
        ("state", 1, "RJ", 0.0, 5),
    ]
    facet, cluster, label, amount, n = (list(col) for col in zip(*rows))
    personas = summarise(facet, cluster, label, amount, n, {0: 100, 1: 50})
    toys = personas[1].more_categories
    assert [s.label for s in toys] == ["toys"] and toys[0].lift == pytest.approx(0.6 / (400 / 1500))
    assert "more than the shop: toys 60% (×2.2 the shop's)" in personas[1].line()
    assert (
        personas[0].more_categories == () and personas[0].more_states == ()
    )  # the bulk of the shop: nothing stands out
    assert personas[1].more_states == ()  # RJ 10% of both: no lift
    assert personas[1].as_json()["over_represented"]["categories"][0]["lift"] == pytest.approx(toys[0].lift)


def test_a_training_that_fails_after_writing_its_table_leaves_the_served_version_and_no_table(
    tmp_path, sample_folder, monkeypatch
):
    """The per-customer table is written before the personas are counted; a failure there (or
    in anything after it) leaves nothing behind and the previous version serving."""
    from segmentation.data import sources
    from segmentation.errors import DataError

    store = ModelStore(tmp_path)
    first, _ = train(OlistSource(sample_folder), store, k=6)

    def broken(self, trained, snapshot, labels=None):
        assert list(store.models.glob(".staged.*.parquet")), "the table is written before the personas"
        raise DataError("the items file cannot be read")

    monkeypatch.setattr(sources.OpenSource, "personas", broken)
    with pytest.raises(DataError):
        train(OlistSource(sample_folder), store, k=6)
    assert store.versions() == [first] and store.current_version() == first
    assert sorted(p.name for p in store.models.iterdir() if p.name.startswith(".")) == [".lock"]


def test_an_unreadable_per_customer_table_is_named_and_the_served_version_stays(tmp_path, sample_folder, monkeypatch):
    """The personas read training's per-customer table back; when that file is damaged the
    failure names it (the shop's files were read fine) and nothing is left behind."""
    from segmentation.data import sources
    from segmentation.errors import DataError

    store = ModelStore(tmp_path)
    first, _ = train(OlistSource(sample_folder), store, k=6)
    real = sources.OpenSource.personas

    def damaged(self, trained, snapshot, labels=None):
        labels.write_bytes(b"not a parquet file")
        return real(self, trained, snapshot, labels)

    monkeypatch.setattr(sources.OpenSource, "personas", damaged)
    with pytest.raises(DataError, match=r"per-customer table training has just written \(.*\.staged\..*\.parquet\)"):
        train(OlistSource(sample_folder), store, k=6)
    assert store.versions() == [first] and store.current_version() == first
    assert sorted(p.name for p in store.models.iterdir() if p.name.startswith(".")) == [".lock"]


def test_personas_on_a_closed_pass_close_the_connection_they_open_even_when_scoring_fails(
    olist_trained, sample_folder, monkeypatch
):
    from segmentation.data import plan as plan_mod
    from segmentation.data import sources

    _, trained = olist_trained
    closed: list[bool] = []

    def spied(source, **kw):
        made = plan_mod._plan(source, **kw)
        close = made.engine.close
        made.engine.close = lambda: (closed.append(True), close())[1]
        return made

    with sources.opened(OlistSource(sample_folder), None, personas=True) as src:
        src.rfm()
    assert src.closed
    monkeypatch.setattr(sources, "_plan", spied)
    monkeypatch.setattr(sources, "scored_ctes", lambda *a: (_ for _ in ()).throw(RuntimeError("scoring failed")))
    with pytest.raises(RuntimeError, match="scoring failed"):
        src.personas(trained, trained.info.snapshot_day)
    assert closed == [True]
