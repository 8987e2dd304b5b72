from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import segmentation.data.sample as sample_mod
from segmentation.data.kinds import OlistSource
from segmentation.data.sample import TRANSACTIONS_COLUMNS, TRANSACTIONS_FILE, write_sample
from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.model.terms import measure


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}


def test_deterministic_for_a_seed(tmp_path):
    a = write_sample(tmp_path / "a", orders=3_000, seed=11)
    b = write_sample(tmp_path / "b", orders=3_000, seed=11)
    c = write_sample(tmp_path / "c", orders=3_000, seed=12)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_structure_of_real_shops(tmp_path):
    folder = write_sample(tmp_path, orders=60_000, seed=5)
    orders = pd.read_csv(folder / "olist_orders_dataset.csv")
    payments = pd.read_csv(folder / "olist_order_payments_dataset.csv")
    customers = pd.read_csv(folder / "olist_customers_dataset.csv")

    assert len(orders) == 60_000 and orders["order_id"].is_unique
    # a fresh customer_id for every order; the person is customer_unique_id
    assert orders["customer_id"].is_unique and len(customers) == len(orders)
    per_person = customers["customer_unique_id"].value_counts()
    assert 0.955 <= (per_person == 1).mean() <= 0.985
    assert 2 <= per_person[per_person > 1].min() and per_person.max() <= 15
    assert 0.02 <= (orders["order_status"] != "delivered").mean() <= 0.04
    rows = payments.groupby("order_id").size()
    assert (rows > 1).sum() > 0.02 * len(orders)
    ts = pd.to_datetime(orders["order_purchase_timestamp"])
    assert 700 <= (ts.max() - ts.min()).days <= 731
    first, second = ts[ts < ts.min() + (ts.max() - ts.min()) / 2], ts[ts >= ts.min() + (ts.max() - ts.min()) / 2]
    assert len(second) > 1.3 * len(first)  # growth
    totals = payments.groupby("order_id")["payment_value"].sum()
    logs = np.log(totals)
    assert abs(pd.Series(logs).skew()) < 0.5  # lognormal: log of the value is roughly symmetric

    table = load_rfm(OlistSource(folder))
    assert table.customers == customers.merge(orders[orders["order_status"] == "delivered"], on="customer_id")[
        "customer_unique_id"
    ].nunique() - _people_only_without_payment(orders, payments, customers)


def _people_only_without_payment(orders, payments, customers) -> int:
    delivered = orders[orders["order_status"] == "delivered"].merge(customers, on="customer_id")
    paid = delivered["order_id"].isin(payments["order_id"])
    with_paid = set(delivered.loc[paid, "customer_unique_id"])
    return len(set(delivered.loc[~paid, "customer_unique_id"]) - with_paid)


def _shape_rfm(tmp_path, shape, orders, seed=3):
    folder = write_sample(tmp_path / shape, orders=orders, seed=seed, shape=shape)
    return folder, load_rfm(OlistSource(folder))


def test_shapes_are_deterministic_per_seed(tmp_path):
    for shape in ("wholesale", "catalogue"):
        a = write_sample(tmp_path / f"{shape}-a", orders=4_000, seed=9, shape=shape)
        b = write_sample(tmp_path / f"{shape}-b", orders=4_000, seed=9, shape=shape)
        assert _digest(a) == _digest(b)
        assert len(pd.read_csv(a / "olist_orders_dataset.csv")) == 4_000


def test_a_wholesaler_s_customers_return_every_few_weeks(tmp_path):
    _, table = _shape_rfm(tmp_path, "wholesale", 60_000)
    f = table.frame
    assert (f["occasions"] >= 2).mean() > 0.8  # most customers return
    terms = measure(table.frame, table.gaps)
    assert terms.return_time <= 35  # typically within a few weeks
    assert f["monetary"].median() > 1_000


def test_a_catalogue_shop_has_three_years_and_mostly_lapsed_customers(tmp_path):
    folder, table = _shape_rfm(tmp_path, "catalogue", 60_000)
    ts = pd.to_datetime(pd.read_csv(folder / "olist_orders_dataset.csv")["order_purchase_timestamp"])
    assert (ts.max() - ts.min()).days > 1000
    f = table.frame
    assert 0.2 < (f["occasions"] >= 2).mean() < 0.8
    terms = measure(table.frame, table.gaps)
    assert (f["recency"] > 2 * terms.return_window).mean() > 0.5  # most are long past the return window


def test_transactions_layout_is_the_same_shop_streamed(tmp_path, monkeypatch):
    """One Parquet file of the delivered orders: the same people, days and spend as the Olist
    layout of the same seed (but for the rare order the Olist files leave without a payment row),
    written chunk by chunk (one row group per chunk, never the whole shop in memory)."""
    olist = load_rfm(OlistSource(write_sample(tmp_path / "olist", orders=9_000, seed=4)))
    monkeypatch.setitem(sample_mod.SHAPES, "marketplace", sample_mod.Shape("marketplace", sample_mod.DAYS, 1_000))
    small = write_sample(tmp_path / "small", orders=9_000, seed=4, layout="transactions")
    assert pq.ParquetFile(small / TRANSACTIONS_FILE).num_row_groups >= 8
    monkeypatch.undo()
    folder = write_sample(tmp_path / "t", orders=9_000, seed=4, layout="transactions")
    assert sorted(p.name for p in folder.iterdir()) == [TRANSACTIONS_FILE]
    rows = pq.read_table(folder / TRANSACTIONS_FILE)
    assert rows.column_names == list(TRANSACTIONS_COLUMNS.values())
    assert 0.95 * 9_000 <= rows.num_rows <= 0.99 * 9_000  # about 3% are not delivered
    table = load_rfm(source_from_spec(folder / TRANSACTIONS_FILE, **TRANSACTIONS_COLUMNS))
    a = olist.frame.set_index("customer_id")
    b = table.frame.set_index("customer_id").loc[a.index]
    assert table.snapshot_date == olist.snapshot_date
    assert 0 <= table.customers - olist.customers <= 3
    assert (a["recency"] == b["recency"]).all() and (a["frequency"] == b["frequency"]).all()
    assert np.allclose(a["monetary"], b["monetary"], atol=0.005)
