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


def rfm_from_orders(orders: pd.DataFrame, as_of: dt.date | None, returns: pd.DataFrame | None = None) -> pd.DataFrame:
    """orders: customer_id, order_id, ordered_at (datetime), cents (int); ``returns`` (the same
    columns, negative cents) are netted against their customer's spend up to the snapshot, and
    customers left with no positive spend are dropped."""
    day = orders["ordered_at"].dt.normalize()
    if as_of:
        orders = orders[day <= pd.Timestamp(as_of)]
    # the snapshot follows the last purchase of anyone, a customer netted out included
    snapshot = pd.Timestamp(as_of) if as_of else orders["ordered_at"].dt.normalize().max() + pd.Timedelta(days=1)
    if returns is not None and len(returns):
        returned = returns[returns["ordered_at"].dt.normalize() <= pd.Timestamp(as_of)] if as_of else returns
        net = (
            orders.groupby("customer_id")["cents"]
            .sum()
            .add(returned.groupby("customer_id")["cents"].sum(), fill_value=0)
        )
        orders = orders[orders["customer_id"].isin(net[net > 0].index)]
        netted = returned.groupby("customer_id")["cents"].sum()
    else:
        netted = pd.Series(dtype=np.int64)
    orders = orders.assign(day=orders["ordered_at"].dt.normalize())
    g = orders.groupby("customer_id")
    first, last = g["day"].min(), g["day"].max()
    occasions = g["day"].nunique()
    out = pd.DataFrame(
        {
            "recency": (snapshot - last).dt.days,
            "frequency": g["order_id"].nunique(),
            "monetary": g["cents"].sum().add(netted, fill_value=0).reindex(g["cents"].sum().index).astype(np.int64)
            / 100.0,
            "occasions": occasions,
            "gap": ((last - first).dt.days / (occasions - 1)).where(occasions > 1),
        }
    ).reset_index()
    return out.sort_values("customer_id").reset_index(drop=True)


def first_returns(orders: pd.DataFrame, as_of: dt.date | None = None) -> dict[int, int]:
    """How many customers came back for the first time after each number of days, written the
    obvious way: each customer's first and second purchase days."""
    day = orders["ordered_at"].dt.normalize()
    snapshot = pd.Timestamp(as_of) if as_of else day.max() + pd.Timedelta(days=1)
    days = orders[day <= snapshot].assign(day=day[day <= snapshot])[["customer_id", "day"]].drop_duplicates()
    out: dict[int, int] = {}
    for _, d in days.groupby("customer_id"):
        if len(d) < 2:
            continue
        first, second = np.sort(d["day"].to_numpy())[:2]
        gap = int((second - first).astype("timedelta64[D]").astype(int))
        out[gap] = out.get(gap, 0) + 1
    return out


def olist_orders(folder: Path) -> pd.DataFrame:
    orders = _read(folder, "olist_orders_dataset")
    payments = _read(folder, "olist_order_payments_dataset")
    customers = _read(folder, "olist_customers_dataset")
    delivered = orders[orders["order_status"] == "delivered"]
    pay = payments.assign(cents=_cents(payments["payment_value"])).groupby("order_id")["cents"].sum()
    df = delivered.merge(pay.rename("cents"), left_on="order_id", right_index=True)
    df = df.merge(customers[["customer_id", "customer_unique_id"]], on="customer_id")
    return pd.DataFrame(
        {
            "customer_id": df["customer_unique_id"],
            "order_id": df["order_id"],
            "ordered_at": pd.to_datetime(df["order_purchase_timestamp"]),
            "cents": df["cents"],
        }
    )


def olist_rfm(folder: Path, as_of: dt.date | None = None) -> pd.DataFrame:
    return rfm_from_orders(olist_orders(folder), as_of)


def lines_rfm(lines: pd.DataFrame, as_of: dt.date | None = None) -> pd.DataFrame:
    """lines: customer, order, date (parseable or junk), cents per line (int or NaN)."""
    ok = lines["customer"].notna() & (lines["customer"].astype(str).str.strip() != "")
    dates = pd.to_datetime(lines["date"], errors="coerce", format="mixed")
    ok &= dates.notna() & lines["cents"].notna()
    good = lines[ok].assign(ordered_at=dates[ok])
    per_order = good.groupby(["customer", "order"]).agg(ordered_at=("ordered_at", "min"), cents=("cents", "sum"))
    per_order = per_order.reset_index().rename(columns={"order": "order_id", "customer": "customer_id"})
    per_order["cents"] = per_order["cents"].astype(np.int64)
    return rfm_from_orders(per_order[per_order["cents"] > 0], as_of, per_order[per_order["cents"] < 0])


def segment_labels(model, X: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """The model's clusters the obvious way: each row's recency band (a repeat buyer lost only
    past the repeat buyers' cut-off) and kind (one-time, repeat, at risk), then the nearest centre
    of that stratum, one row at a time."""
    out = []
    Z = (np.log1p(X) - model.scaler_.mean_) / model.scaler_.scale_
    one_lost, repeat_lost = model.lost or (model.cutoffs[-1], model.cutoffs[-1])
    for x, z, kind in zip(X, Z, kinds):
        lost = repeat_lost if x[1] >= 2 else one_lost
        band = 3 if x[0] > lost else sum(x[0] > c for c in model.cutoffs[:2])
        s = model.lookup_[band, kind]
        own = [i for i, owner in enumerate(model.center_stratum_) if owner == s]
        d = [float(((z - model.cluster_centers_[i]) ** 2).sum()) for i in own]
        out.append(own[int(np.argmin(d))])
    return np.array(out, dtype=np.int64)


def at_risk(rule, terms, r: float, o: float, m: float, p: float, p0: float) -> bool:
    """The at-risk rule as the playbook states it, for one customer with chance ``p`` now and
    ``p0`` on the day of their last order."""
    import math

    if math.isnan(p) or math.isnan(p0):
        return False
    spend = {"high": terms.spend_high_from, "mid": terms.spend_low_below, "none": math.inf}[rule.one_time_spend]
    worth = (rule.repeat_buyers and o >= 2) or m >= spend
    lost = terms.repeat_lost if o >= 2 else terms.return_window  # one-time buyers: while lapsing
    # odds now at most `fall` x odds then, p/(1-p) <= fall p0/(1-p0), multiplied out
    slipping = terms.return_time < r <= lost and p * (1 - p0) <= rule.fall * p0 * (1 - p)
    floor = rule.floor if o < 2 or rule.floor_repeat is None else rule.floor_repeat
    above = floor is None or p >= floor
    below = rule.ceiling is None or p < rule.ceiling
    return bool(worth and slipping and above and below)


def olist_personas(folder: Path, cluster_of: dict[str, int], sizes: dict[int, int]) -> dict[int, dict]:
    """Each cluster's persona from the Olist files the obvious way, for the customers of
    ``cluster_of`` (customer_unique_id → cluster): item revenue by category (English where the
    translation has it), payment value by type, the median of each order's most instalments,
    and the share of the cluster's customers (``sizes``) who ordered from each state."""
    valid = olist_orders(folder)
    orders = _read(folder, "olist_orders_dataset")[["order_id", "customer_id"]].rename(columns={"customer_id": "cid"})
    valid = valid.merge(orders, on="order_id")
    valid["cluster"] = valid["customer_id"].map(cluster_of)
    valid = valid.dropna(subset=["cluster"])
    out: dict[int, dict] = {}

    def top(series: pd.Series, whole: float, n: int = 3) -> list[tuple[str, float]]:
        s = series[series > 0]
        ranked = sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(k, v / whole) for k, v in ranked]

    items = _read(folder, "olist_order_items_dataset")
    products = _read(folder, "olist_products_dataset")
    translation = _read(folder, "product_category_name_translation")
    names = dict(zip(translation["product_category_name"], translation["product_category_name_english"]))
    cat_of = {
        p: names.get(c, c) if c else "(no category)"
        for p, c in zip(products["product_id"], products["product_category_name"])
    }
    lines = items.merge(valid[["order_id", "cluster"]], on="order_id")
    lines["category"] = lines["product_id"].map(cat_of).fillna("(no category)")
    lines["cents"] = _cents(lines["price"])
    payments = _read(folder, "olist_order_payments_dataset").merge(valid[["order_id", "cluster"]], on="order_id")
    payments["cents"] = _cents(payments["payment_value"])
    payments["inst"] = pd.to_numeric(payments["payment_installments"])
    customers = _read(folder, "olist_customers_dataset")
    located = valid.merge(customers[["customer_id", "customer_state"]], left_on="cid", right_on="customer_id")
    for c in sorted(valid["cluster"].unique()):
        c = int(c)
        li, pa, lo = lines[lines["cluster"] == c], payments[payments["cluster"] == c], located[located["cluster"] == c]
        by_cat = li.groupby("category")["cents"].sum()
        by_type = pa.groupby("payment_type")["cents"].sum()
        per_order = pa.groupby("order_id")["inst"].max().sort_values().to_numpy()
        states = lo.groupby("customer_state")["customer_id_x"].nunique()
        out[c] = {
            "categories": top(by_cat, float(by_cat.sum())),
            "payment": top(by_type, float(by_type.sum()), 1),
            "instalments": float(per_order[(len(per_order) + 1) // 2 - 1]) if len(per_order) else None,
            "states": top(states.astype(float), float(sizes[c])),
        }
    return out
