"""Spark (local mode) against DuckDB on the same generated orders: the same RFM, the same
segments for every customer, the same digest counts when scoring inside each engine; with times.

Usage: python bench/bench_spark.py [--orders 500000]   (needs `pip install -e ".[spark]"`, Java 17)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from segmentation.data.sample import write_sample
from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train

FLAGS = dict(customer_col="customer", order_col="order_id", date_col="created_at", amount_col="total")


def orders_parquet(folder: Path, out: Path) -> None:
    import duckdb

    duckdb.connect().execute(f"""
        COPY (
          SELECT c.customer_unique_id AS customer, o.order_id,
                 CAST(o.order_purchase_timestamp AS TIMESTAMP) AS created_at, CAST(p.total AS DECIMAL(18,2)) AS total
          FROM read_csv('{folder}/olist_orders_dataset.csv*') o
          JOIN (SELECT order_id, SUM(payment_value) AS total
                FROM read_csv('{folder}/olist_order_payments_dataset.csv*') GROUP BY 1) p USING (order_id)
          JOIN read_csv('{folder}/olist_customers_dataset.csv*') c USING (customer_id)
          WHERE o.order_status = 'delivered'
        ) TO '{out}' (FORMAT parquet)
    """)


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=500_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        write_sample(tmp_path / "olist", orders=args.orders, seed=3)
        parquet = tmp_path / "orders.parquet"
        orders_parquet(tmp_path / "olist", parquet)
        duck_src = source_from_spec(parquet, **FLAGS)
        spark_src = source_from_spec(f"spark:{parquet}", **FLAGS)
        load_rfm(spark_src)  # start the Spark session once, outside the timings
        print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
        a, t_duck = timed(lambda: load_rfm(duck_src))
        b, t_spark = timed(lambda: load_rfm(spark_src))
        pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
        assert (a.excluded, a.gaps, a.snapshot_date) == (b.excluded, b.gaps, b.snapshot_date)
        print(f"RFM of {len(a.frame):,} customers: identical; DuckDB {t_duck:.1f} s, Spark {t_spark:.1f} s")
        stores = {name: ModelStore(tmp_path / name) for name in ("duck", "spark")}
        _, t1 = timed(lambda: train(duck_src, stores["duck"]))
        _, t2 = timed(lambda: train(spark_src, stores["spark"]))
        x = pd.read_parquet(next((tmp_path / "duck").rglob("*.assignments.parquet")))
        y = pd.read_parquet(next((tmp_path / "spark").rglob("*.assignments.parquet")))
        pd.testing.assert_frame_equal(x, y)
        print(f"segments: every customer in the same segment; training DuckDB {t1:.1f} s, Spark {t2:.1f} s")
        served = SegmentService(stores["duck"]).served()
        as_of = dt.date.fromisoformat(served.info.snapshot_date) + dt.timedelta(days=30)
        s1, t3 = timed(lambda: served.score_source(duck_src, as_of))
        s2, t4 = timed(lambda: served.score_source(spark_src, as_of))
        assert (s1.counts == s2.counts).all() and s1.at_risk.customers == s2.at_risk.customers
        print(
            f"digest scoring in the engine: same counts, {s1.at_risk.customers:,} at risk; "
            f"DuckDB {t3:.1f} s, Spark {t4:.1f} s"
        )


if __name__ == "__main__":
    main()
