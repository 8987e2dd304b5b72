"""The served model compiled to SQL gives the same chance to buy again, segment and at-risk flag as NumPy, on DuckDB,
PostgreSQL, MariaDB and Spark (each where it is configured; `.ci/run` configures them all)."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from segmentation.data import relations as rel
from segmentation.data.database_engine import DatabaseEngine
from segmentation.data.duckdb_engine import DuckDBEngine
from segmentation.data.urls import resolve_url
from segmentation.model.compiled import scored_ctes
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore


def _engines():
    params = ["duckdb"]
    if os.environ.get("TEST_DATABASE_URL"):
        params.append("postgresql")
    if os.environ.get("TEST_MYSQL_URL"):
        params.append("mariadb")
    params.append("spark")
    return params


def _points(served, n: int = 4_000, seed: int = 0) -> pd.DataFrame:
    """Random customers, with every cut-off of the model and the rule hit exactly too."""
    rng = np.random.default_rng(seed)
    t = served.terms
    occasions = rng.integers(1, 15, n)
    recency = rng.integers(0, int(t.lost_after * 2) + 2, n)
    edges = [*served.trained.model.cutoffs, t.return_time, t.return_window, t.one_time_lost, t.repeat_lost]
    recency[: len(edges) * 3] = np.repeat([int(e) for e in edges], 3) + np.tile([-1, 0, 1], len(edges))
    monetary = np.round(np.exp(rng.normal(5, 1.2, n)), 2)
    monetary[:40] = t.spend_high_from
    gap = np.where(occasions > 1, rng.uniform(1, t.return_window, n), np.nan)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:06d}" for i in range(n)],
            "recency": recency.astype(np.int64),
            "frequency": occasions + rng.integers(0, 2, n),
            "monetary": monetary,
            "occasions": occasions.astype(np.int64),
            "gap": gap,
            "last_day": np.zeros(n, dtype=np.int64),
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_folder):
    from segmentation.data.kinds import OlistSource
    from segmentation.serving.training import train

    store = ModelStore(tmp_path_factory.mktemp("compiled"))
    train(OlistSource(sample_folder), store, k=11)
    return SegmentService(store).served()


@pytest.mark.parametrize("engine_name", _engines())
def test_sql_scoring_equals_numpy(served, engine_name, tmp_path):
    points = _points(served)
    expected = served.score(points)
    ctes = scored_ctes(served.trained.model, served.trained.rule, served.terms, served.trained.chance)
    select = "SELECT customer_id, at_risk, cluster, chance FROM scored ORDER BY customer_id"
    table = f"pts_{uuid.uuid4().hex[:8]}"
    if engine_name == "duckdb":
        engine = DuckDBEngine("points")
        engine.con.register("pts_frame", points)
        engine.con.execute(f"CREATE TABLE {table} AS SELECT * FROM pts_frame")
        cleanup = None
    elif engine_name == "spark":
        pytest.importorskip("pyspark") if not os.environ.get("CI") else None
        from segmentation.data.spark_engine import SparkEngine

        path = tmp_path / "points.parquet"
        points.to_parquet(path, index=False)
        engine = SparkEngine("points")
        engine.register(table, str(path), None)
        cleanup = None
    else:
        url = os.environ["TEST_DATABASE_URL" if engine_name == "postgresql" else "TEST_MYSQL_URL"]
        url = f"{url.split('://')[0].split('+')[0]}://{url.split('://', 1)[1]}"
        sa_engine = sa.create_engine(resolve_url(url)[0], poolclass=sa.pool.NullPool)
        points.to_sql(table, sa_engine, index=False)
        engine = DatabaseEngine(url)
        engine.prepare_scoring()

        def cleanup():
            with sa_engine.begin() as con:
                con.exec_driver_sql(f"DROP TABLE {table}")
            sa_engine.dispose()

    try:
        got = engine.table(rel.with_ctes([("customers", f"SELECT * FROM {table}"), *ctes], select)).to_pandas()
    finally:
        engine.close()
        if cleanup:
            cleanup()
    assert list(got["customer_id"].astype(str)) == list(points["customer_id"])
    # the chance to 12 significant digits (engines' logarithms may differ in the last bit), the
    # flag and the segment exactly
    np.testing.assert_allclose(got["chance"].astype(float).to_numpy(), expected.chance, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got["at_risk"].astype(int).to_numpy(), expected.at_risk.astype(int))
    np.testing.assert_array_equal(got["cluster"].astype(int).to_numpy(), expected.labels)
    assert expected.at_risk.any() and len(np.unique(expected.labels)) >= 8  # the points cover the model


def test_scoring_a_source_in_its_engine_equals_scoring_its_rfm(served, sample_folder):
    from segmentation.data.kinds import OlistSource
    from segmentation.data.sources import load_rfm

    as_of = dt.date.fromisoformat(served.info.snapshot_date) + dt.timedelta(days=45)
    in_engine = served.score_source(OlistSource(sample_folder), as_of)
    table = load_rfm(OlistSource(sample_folder), as_of=as_of)
    numpy_scored = served.score(table.frame)
    k = len(served.trained.model.cluster_centers_)
    np.testing.assert_array_equal(in_engine.counts, np.bincount(numpy_scored.labels, minlength=k))
    expected = served.at_risk(numpy_scored, as_of=as_of.isoformat())
    got = in_engine.at_risk
    assert (got.customers, got.all_customers, got.definition, got.as_of) == (
        expected.customers,
        expected.all_customers,
        expected.definition,
        expected.as_of,
    )
    # sums of money in another order: equal to the cent
    assert got.revenue == pytest.approx(expected.revenue, abs=0.005)
    assert got.all_revenue == pytest.approx(expected.all_revenue, abs=0.005)
    assert [(s.name, s.customers) for s in got.by_segment] == [(s.name, s.customers) for s in expected.by_segment]
    for a, b in zip(got.by_segment, expected.by_segment):
        assert a.revenue == pytest.approx(b.revenue, abs=0.005)
    assert sorted(in_engine.at_risk_rows["customer_id"]) == sorted(table.frame["customer_id"][numpy_scored.at_risk])
    assert in_engine.latest_purchase == table.latest_purchase and in_engine.customers == len(table.frame)
