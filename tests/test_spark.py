"""Spark in local mode runs the same RFM definition and the same compiled model as DuckDB.
PySpark is an optional extra (`pip install -e ".[spark]"`); `.ci/run` installs it, and in CI a
missing PySpark fails these tests instead of skipping them. The backtest on Spark is checked on a
real cluster (test_spark_cluster.py)."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from conftest import run_cli
from test_databases import _same, _transactions

from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.errors import DataError

if not os.environ.get("CI"):
    pytest.importorskip("pyspark")

FLAGS = dict(customer_col="Customer", order_col="order_no", date_col="created_at", amount_col="total")


def test_the_spark_tests_share_one_worker_and_one_jvm(request):
    if request.config.getvalue("loadgroup"):
        assert request.node.nodeid.endswith("@spark"), "--dist loadgroup did not group the Spark tests"


def test_spark_rfm_equals_duckdb(tmp_path):
    df = _transactions(seed=21, n=3_000)
    path = tmp_path / "orders.parquet"
    df.to_parquet(path, index=False)
    _same(load_rfm(source_from_spec(f"spark:{path}", **FLAGS)), load_rfm(source_from_spec(path, **FLAGS)))
    view = load_rfm(source_from_spec("spark:", query=f"SELECT * FROM parquet.`{path}` WHERE total > 10", **FLAGS))
    subset = tmp_path / "subset.parquet"
    df[df["total"] > 10].to_parquet(subset, index=False)
    _same(view, load_rfm(source_from_spec(subset, **FLAGS)))


def test_train_and_score_on_spark(tmp_path):
    df = _transactions(seed=5, n=6_000)
    path = tmp_path / "orders.parquet"
    df.to_parquet(path, index=False)
    flags = [
        "--customer-col",
        "Customer",
        "--order-col",
        "order_no",
        "--date-col",
        "created_at",
        "--amount-col",
        "total",
    ]
    for name, data in (("spark", f"spark:{path}"), ("duckdb", str(path))):
        r = run_cli("--artifacts", str(tmp_path / name), "-q", "train", "--k", "6", "--data", data, *flags)
        assert r.code == 0, r.err
    a = pd.read_parquet(next((tmp_path / "spark").rglob("*.assignments.parquet")))
    b = pd.read_parquet(next((tmp_path / "duckdb").rglob("*.assignments.parquet")))
    pd.testing.assert_frame_equal(a, b)  # the same customers in the same segments

    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore

    served = SegmentService(ModelStore(tmp_path / "spark")).served()
    in_spark = served.score_source(source_from_spec(f"spark:{path}", **FLAGS))
    in_duckdb = served.score_source(source_from_spec(path, **FLAGS))
    assert (in_spark.counts == in_duckdb.counts).all() and in_spark.at_risk.customers == in_duckdb.at_risk.customers


def test_spark_without_an_order_column(tmp_path):
    df = _transactions(seed=8, n=800).dropna(subset=["created_at"])
    path = tmp_path / "rows.parquet"
    df.to_parquet(path, index=False)
    flags = dict(customer_col="Customer", date_col="created_at", amount_col="total")
    _same(load_rfm(source_from_spec(f"spark:{path}", **flags)), load_rfm(source_from_spec(path, **flags)))


def test_spark_errors_are_one_line(tmp_path):
    for spec, kwargs, expected in (
        (f"spark:{tmp_path / 'missing.parquet'}", FLAGS, "the query failed"),
        ("spark:", {"query": "SELEC nonsense", **FLAGS}, "the query failed"),
        ("spark:", FLAGS, "give a table name"),
    ):
        with pytest.raises(DataError, match=expected) as info:
            load_rfm(source_from_spec(spec, **kwargs))
        assert "\n" not in str(info.value)
