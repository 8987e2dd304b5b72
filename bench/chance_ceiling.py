"""How well can anything rank Olist's future buyers? A ceiling for the chance to buy again.

The product's chance model uses what every shop's export has (recency, purchase days, spend,
tenure, the customer's own gap). Olist's files carry more: items and sellers per order, freight,
instalments, payment types, delivery time and lateness, the customer's state, the category. This
script asks whether any of it would lift the ranking, with the same out-of-time protocol as
`segment backtest` (learn on the window before the cut-off, score the window after it):

  * logistic regression on the product's four inputs;
  * logistic regression and gradient boosting on all of them (states and categories one-hot);
  * an upper bound that is *not* out of time: gradient boosting cross-validated inside the test
    window itself (it learns from the very future it is scored on).

Each AUC has its 95% interval (Hanley and McNeil). Reads the Olist folder only; no product code.
The delivery inputs (days to deliver, days late) and the "delivered" filter use what the files
know now, which for the latest orders may be after the cut-off: that can only flatter the richer
models, so the ceiling is if anything generous.

Usage: python bench/chance_ceiling.py [OLIST_FOLDER] [--cutoff 2018-03-01] [--horizon 180]
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "olist"
BASE = ["log_recency", "log_purchase_days", "log_spend", "log_tenure"]


def load(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    f = {
        n: f"read_csv_auto('{folder}/olist_{n}_dataset.csv*')"
        for n in ("orders", "customers", "order_payments", "order_items", "products")
    }
    con.execute(f"""
        CREATE TABLE o AS SELECT o.*, c.customer_unique_id AS u, c.customer_state AS state
          FROM {f["orders"]} o JOIN {f["customers"]} c USING (customer_id) WHERE order_status = 'delivered';
        CREATE TABLE p AS SELECT order_id, SUM(payment_value) AS paid, MAX(payment_installments) AS instalments,
            MAX(payment_type = 'voucher')::INT AS voucher, MAX(payment_type = 'boleto')::INT AS boleto
          FROM {f["order_payments"]} GROUP BY 1;
        CREATE TABLE i AS SELECT order_id, COUNT(*) AS items, COUNT(DISTINCT seller_id) AS sellers,
            SUM(freight_value) AS freight, SUM(price) AS price, ANY_VALUE(product_category_name) AS category
          FROM {f["order_items"]} LEFT JOIN {f["products"]} USING (product_id) GROUP BY 1""")


def window(con: duckdb.DuckDBPyConnection, cutoff: dt.date, horizon: int) -> pd.DataFrame:
    """One row per customer as of ``cutoff`` (that day included) and whether they bought in the
    ``horizon`` days after it."""
    return con.execute(f"""
        WITH h AS (
          SELECT o.u, o.state, CAST(o.order_purchase_timestamp AS DATE) AS day, o.order_purchase_timestamp AS ts,
                 p.paid, p.instalments, p.voucher, p.boleto, i.items, i.sellers, i.freight, i.price, i.category,
                 date_diff('day', CAST(order_estimated_delivery_date AS TIMESTAMP), CAST(order_delivered_customer_date AS TIMESTAMP)) AS late,
                 date_diff('day', CAST(order_purchase_timestamp AS TIMESTAMP), CAST(order_delivered_customer_date AS TIMESTAMP)) AS ship
          FROM o LEFT JOIN p USING (order_id) LEFT JOIN i USING (order_id)
          WHERE CAST(o.order_purchase_timestamp AS DATE) <= DATE '{cutoff}'),
        f AS (
          SELECT u, date_diff('day', MAX(day), DATE '{cutoff}') AS recency, COUNT(DISTINCT day) AS purchase_days,
                 SUM(paid) AS spend, date_diff('day', MIN(day), DATE '{cutoff}') AS tenure,
                 arg_max(state, ts) AS state, arg_max(late, ts) AS late, arg_max(ship, ts) AS ship,
                 MAX(instalments) AS instalments, MAX(voucher) AS voucher, MAX(boleto) AS boleto, SUM(items) AS items,
                 MAX(sellers) AS sellers, SUM(freight) AS freight, SUM(price) AS price, arg_max(category, ts) AS category
          FROM h GROUP BY u),
        y AS (SELECT DISTINCT u, 1 AS bought FROM o
              WHERE CAST(order_purchase_timestamp AS DATE) > DATE '{cutoff}'
                AND CAST(order_purchase_timestamp AS DATE) <= DATE '{cutoff + dt.timedelta(days=horizon)}')
        SELECT f.*, COALESCE(y.bought, 0) AS bought FROM f LEFT JOIN y USING (u) ORDER BY u""").df()


def inputs(df: pd.DataFrame, states: list[str], categories: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "log_recency": np.log1p(df["recency"]),
            "log_purchase_days": np.log(df["purchase_days"]),
            "log_spend": np.log1p(df["spend"].fillna(0)),
            "log_tenure": np.log1p(df["tenure"]),
            "days_late": df["late"].fillna(0).clip(-30, 30),
            "was_late": (df["late"].fillna(-1) > 0).astype(int),
            "log_ship_days": np.log1p(df["ship"].fillna(10).clip(0, 100)),
            "instalments": df["instalments"].fillna(1),
            "voucher": df["voucher"].fillna(0),
            "boleto": df["boleto"].fillna(0),
            "log_items": np.log(df["items"].fillna(1)),
            "sellers": df["sellers"].fillna(1),
            "freight_share": (df["freight"] / (df["price"] + df["freight"])).fillna(0.15),
        }
    )
    for s in states:
        out["state_" + s] = (df["state"] == s).astype(int)
    for c in categories:
        out["category_" + str(c)] = (df["category"] == c).astype(int)
    return out


def interval(y: np.ndarray, score: np.ndarray) -> str:
    a = roc_auc_score(y, score)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    return f"{a:.3f} ({a - 1.96 * se:.3f}–{a + 1.96 * se:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--cutoff", default="2018-03-01")
    ap.add_argument("--horizon", type=int, default=180)
    args = ap.parse_args()
    cutoff = dt.date.fromisoformat(args.cutoff)
    con = duckdb.connect()
    load(con, Path(args.folder))
    learn = window(con, cutoff - dt.timedelta(days=args.horizon), args.horizon)
    test = window(con, cutoff, args.horizon)
    states = list(learn["state"].value_counts().index[:10])
    categories = list(learn["category"].value_counts().index[:20])
    X_learn, X_test = inputs(learn, states, categories), inputs(test, states, categories)
    mean, std = X_learn.mean(), X_learn.std().replace(0, 1)
    y_learn, y_test = learn["bought"].to_numpy(), test["bought"].to_numpy()
    print(
        f"learn: {len(learn):,} customers as of {cutoff - dt.timedelta(days=args.horizon)}, {y_learn.mean():.2%} bought again"
    )
    print(f"test:  {len(test):,} customers as of {cutoff}, {y_test.mean():.2%} bought again within {args.horizon} days")
    print(f"inputs: {len(BASE)} the product uses, {X_learn.shape[1]} in all\n")
    print("AUC of 'buys again' on the test window (95% interval):")
    for name in BASE[:2]:
        print(f"  {name + ' alone':62s} {interval(y_test, -X_test[name] if 'recency' in name else X_test[name])}")
    for label, cols in (("the product's four inputs", BASE), ("all inputs", list(X_learn.columns))):
        lr = LogisticRegression(C=0.1, max_iter=3000).fit(((X_learn - mean) / std)[cols], y_learn)
        print(
            f"  {'logistic regression, ' + label:62s} {interval(y_test, lr.predict_proba(((X_test - mean) / std)[cols])[:, 1])}"
        )
    gbm = dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200, random_state=0)
    boosted = HistGradientBoostingClassifier(**gbm).fit(X_learn, y_learn)
    print(f"  {'gradient boosting, all inputs':62s} {interval(y_test, boosted.predict_proba(X_test)[:, 1])}")
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    inside = cross_val_predict(HistGradientBoostingClassifier(**gbm), X_test, y_test, cv=folds, method="predict_proba")[
        :, 1
    ]
    print(f"  {'upper bound, NOT out of time (5-fold inside the test window)':62s} {interval(y_test, inside)}")


if __name__ == "__main__":
    main()
