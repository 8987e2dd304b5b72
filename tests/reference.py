"""Plain pandas references for the RFM aggregation, written the obvious way.

Amounts are summed in integer cents, as the SQL sums DECIMAL(18,2), so results compare exactly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd


def _read(folder: Path, stem: str) -> pd.DataFrame:
    for suffix in (".csv", ".csv.gz"):
        p = folder / f"{stem}{suffix}"
        if p.exists():
            return pd.read_csv(p, dtype=str, keep_default_na=False)
    raise FileNotFoundError(stem)


def _cents(values: pd.Series) -> pd.Series:
    return (pd.to_numeric(values).astype(float) * 100).round().astype(np.int64)


def rfm_from_orders(orders: pd.DataFrame, as_of: dt.date | None) -> pd.DataFrame:
    """orders: customer_id, order_id, ordered_at (datetime), cents (int)."""
    day = orders["ordered_at"].dt.normalize()
    snapshot = pd.Timestamp(as_of) if as_of else day.max() + pd.Timedelta(days=1)
    orders = orders[day <= snapshot]
    g = orders.groupby("customer_id")
    out = pd.DataFrame(
        {
            "recency": (snapshot - g["ordered_at"].max().dt.normalize()).dt.days,
            "frequency": g["order_id"].nunique(),
            "monetary": g["cents"].sum() / 100.0,
        }
    ).reset_index()
    return out.sort_values("customer_id").reset_index(drop=True)


def olist_rfm(folder: Path, as_of: dt.date | None = None) -> pd.DataFrame:
    orders = _read(folder, "olist_orders_dataset")
    payments = _read(folder, "olist_order_payments_dataset")
    customers = _read(folder, "olist_customers_dataset")
    delivered = orders[orders["order_status"] == "delivered"]
    pay = payments.assign(cents=_cents(payments["payment_value"])).groupby("order_id")["cents"].sum()
    df = delivered.merge(pay.rename("cents"), left_on="order_id", right_index=True)
    df = df.merge(customers[["customer_id", "customer_unique_id"]], on="customer_id")
    df = pd.DataFrame(
        {
            "customer_id": df["customer_unique_id"],
            "order_id": df["order_id"],
            "ordered_at": pd.to_datetime(df["order_purchase_timestamp"]),
            "cents": df["cents"],
        }
    )
    return rfm_from_orders(df, as_of)


def lines_rfm(lines: pd.DataFrame, as_of: dt.date | None = None) -> pd.DataFrame:
    """lines: customer, order, date (parseable or junk), cents per line (int or NaN)."""
    ok = lines["customer"].notna() & (lines["customer"].astype(str).str.strip() != "")
    dates = pd.to_datetime(lines["date"], errors="coerce", format="mixed")
    ok &= dates.notna() & lines["cents"].notna()
    good = lines[ok].assign(ordered_at=dates[ok])
    per_order = good.groupby("order").agg(
        customer_id=("customer", "min"), ordered_at=("ordered_at", "min"), cents=("cents", "sum")
    )
    per_order = per_order[per_order["cents"] > 0].reset_index().rename(columns={"order": "order_id"})
    per_order["cents"] = per_order["cents"].astype(np.int64)
    return rfm_from_orders(per_order, as_of)
