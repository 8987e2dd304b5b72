"""The original analysis' plain pipeline, kept as the yardstick for `segment train`.

pandas read_csv, merge and a vectorised groupby of the three Olist tables, log1p, StandardScaler, KMeans(11, n_init=10).
Usage: python bench/baseline_pipeline.py OLIST_FOLDER
"""

import sys
import time
from pathlib import Path

t0 = time.perf_counter()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def read(folder: Path, stem: str) -> pd.DataFrame:
    for suffix in (".csv", ".csv.gz"):
        if (folder / f"{stem}{suffix}").exists():
            return pd.read_csv(folder / f"{stem}{suffix}")
    raise SystemExit(f"{folder}: missing {stem}")


folder = Path(sys.argv[1])
orders = read(folder, "olist_orders_dataset")
payments = read(folder, "olist_order_payments_dataset")
customers = read(folder, "olist_customers_dataset")
t1 = time.perf_counter()
orders = orders[orders["order_status"] == "delivered"]
df = orders.merge(payments, on="order_id").merge(customers, on="customer_id")
df["order_purchase_timestamp"] = pd.to_datetime(df["order_purchase_timestamp"])
snapshot = df["order_purchase_timestamp"].max() + pd.Timedelta(days=1)
# vectorised: built-in aggregations only (a per-group lambda would make this baseline twice as slow)
rfm = df.groupby("customer_unique_id").agg(
    last=("order_purchase_timestamp", "max"),
    frequency=("order_id", "nunique"),
    monetary=("payment_value", "sum"),
)
rfm["recency"] = (snapshot - rfm.pop("last")).dt.days
rfm = rfm[["recency", "frequency", "monetary"]]
t2 = time.perf_counter()
X = StandardScaler().fit_transform(np.log1p(rfm))
KMeans(n_clusters=11, n_init=10, random_state=42).fit(X)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {len(rfm)}")
