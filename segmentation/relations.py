"""The product's SQL, written once (DuckDB dialect; ``dialects`` compiles it for every engine).

Every source becomes the same *orders relation*, one row per order:

    order_id, customer_id, ordered_at (TIMESTAMP), amount (DECIMAL), excluded (reason or NULL)

``rfm_sql`` aggregates it per customer in one pass that also counts the excluded rows by reason;
``gaps_sql`` measures how long the shop's returning customers take to come back (the weighted
quantiles of the gaps between their purchase days). Only per-customer rows and a handful of
numbers leave the engine, never the order lines.

Files are read by DuckDB, which tolerates bad values (``TRY_CAST``: a row with an unreadable
date or amount is excluded and counted). Databases and Spark hold typed columns, read with a
plain ``CAST``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .engines import ident, sql_str

EPOCH = dt.date(1970, 1, 1)
PLACEHOLDER = "segment_source_relation_q7f3"  # stands for a user's own query until the SQL is compiled
OLDEST = dt.date(1990, 1, 1)  # orders dated earlier are placeholders (1900-01-01 and friends)

OLIST_TABLES = {
    "orders": "olist_orders_dataset",
    "payments": "olist_order_payments_dataset",
    "customers": "olist_customers_dataset",
}
OLIST_COLUMNS = {
    "orders": ("order_id", "customer_id", "order_status", "order_purchase_timestamp"),
    "payments": ("order_id", "payment_value"),
    "customers": ("customer_id", "customer_unique_id"),
}


@dataclass(frozen=True)
class Reading:
    """How to read raw values: DuckDB over files tolerates bad ones, typed engines cast."""

    cast: str = "CAST"  # or TRY_CAST
    date_format: str | None = None  # strptime format (files only)

    def timestamp(self, col: str) -> str:
        c = ident(col)
        if self.date_format:
            return f"TRY_STRPTIME(CAST({c} AS VARCHAR), {sql_str(self.date_format)})"
        if self.cast == "TRY_CAST":
            # ISO dates and timestamps; one with a UTC offset is converted to UTC (the session
            # time zone), one without is taken as UTC. TIMESTAMPTZ first: a plain TIMESTAMP cast
            # would silently drop the offset.
            return f"COALESCE(CAST(TRY_CAST({c} AS TIMESTAMPTZ) AS TIMESTAMP), TRY_CAST({c} AS TIMESTAMP))"
        return f"CAST({c} AS TIMESTAMP)"  # engines convert zoned values to the session's UTC

    def money(self, expr: str) -> str:
        return f"{self.cast}({expr} AS DECIMAL(18,2))"

    def number(self, expr: str) -> str:
        return f"{self.cast}({expr} AS DECIMAL(18,4))"


def text_id(expr: str) -> str:
    """A trimmed text id, NULL when blank, compared byte by byte in every engine."""
    return f"BINARY_TEXT(NULLIF(TRIM(CAST({expr} AS VARCHAR)), ''))"


def olist_orders(orders: str, payments: str, customers: str, reading: Reading) -> list[tuple[str, str]]:
    """The Olist layout: delivered orders only, payments summed per order, customers identified
    by ``customer_unique_id`` (``customer_id`` is per order in Olist)."""
    amount = reading.money("payment_value")
    return [
        (
            "orders",
            f"""
    SELECT o.order_id AS order_id, c.uid AS customer_id, o.ordered_at AS ordered_at, p.amount AS amount,
           1 AS n_rows,
           CASE WHEN o.status IS DISTINCT FROM 'delivered' THEN 'not_delivered'
                WHEN c.uid IS NULL THEN 'without_customer'
                WHEN o.ordered_at IS NULL THEN 'bad_date'
                WHEN p.order_id IS NULL THEN 'without_payment'
                WHEN p.n_ok < p.n_rows THEN 'bad_amount'
           END AS excluded
    FROM (
        -- one row per order id, should the orders table repeat one
        SELECT order_id, MIN(cid) AS cid, MIN(status) AS status, MIN(ordered_at) AS ordered_at
        FROM (
            SELECT CAST(order_id AS VARCHAR) AS order_id, CAST(customer_id AS VARCHAR) AS cid,
                   LOWER(TRIM(CAST(order_status AS VARCHAR))) AS status,
                   {reading.timestamp("order_purchase_timestamp")} AS ordered_at
            FROM {orders} AS oo
        ) AS ooo
        GROUP BY order_id
    ) AS o
    LEFT JOIN (
        SELECT CAST(order_id AS VARCHAR) AS order_id, SUM({amount}) AS amount,
               COUNT(*) AS n_rows, COUNT({amount}) AS n_ok
        FROM {payments} AS pp
        GROUP BY CAST(order_id AS VARCHAR)
    ) AS p ON o.order_id = p.order_id
    LEFT JOIN (
        SELECT CAST(customer_id AS VARCHAR) AS customer_id, MIN({text_id("customer_unique_id")}) AS uid
        FROM {customers} AS cc
        GROUP BY CAST(customer_id AS VARCHAR)
    ) AS c ON o.cid = c.customer_id""",
        )
    ]


@dataclass(frozen=True)
class Columns:
    """Which columns of a transactions table hold what (names as they are in the source)."""

    customer: str
    date: str
    order: str | None = None
    amount: str | None = None
    quantity: str | None = None
    price: str | None = None


def transactions_orders(
    relation: str, cols: Columns, reading: Reading, order_is_key: bool = False
) -> list[tuple[str, str]]:
    """One row per order line (or per order): lines of one (customer, order) are summed. An order
    is (customer, order id): exports that merge several stores can reuse order numbers, and
    those must never merge two customers. Without an order column, or when the database declares
    it a key (``order_is_key``), every row is an order and there is nothing to sum."""
    if cols.amount:
        amount = reading.money(ident(cols.amount))
    else:
        assert cols.quantity and cols.price
        amount = (
            f"CAST(ROUND({reading.number(ident(cols.quantity))} * {reading.number(ident(cols.price))}, 2) "
            "AS DECIMAL(18,2))"
        )
    # without an order column every row is an order (the id is never read: there is no grouping)
    order = text_id(ident(cols.order)) if cols.order else "'row'"
    rows_are_orders = order_is_key or not cols.order
    return [
        (
            "flagged",
            f"""
            SELECT customer_id, order_id, ordered_at, amount,
                   CASE WHEN customer_id IS NULL THEN 'without_customer'
                        WHEN order_id IS NULL THEN 'without_order'
                        WHEN ordered_at IS NULL THEN 'bad_date'
                        WHEN amount IS NULL THEN 'bad_amount'
                   END AS excluded
            FROM (
                SELECT {text_id(ident(cols.customer))} AS customer_id, {order} AS order_id,
                       {reading.timestamp(cols.date)} AS ordered_at, {amount} AS amount
                FROM {relation} AS src
            ) AS r""",
        ),
        (ROWS_ARE_ORDERS if rows_are_orders else LINES_TO_ORDERS),
    ]


# Every row is an order: only the non-positive totals are added to the reasons.
ROWS_ARE_ORDERS = (
    "orders",
    """
    SELECT order_id, customer_id, ordered_at, amount, 1 AS n_rows,
           COALESCE(excluded, CASE WHEN amount <= 0 THEN 'nonpositive_total' END) AS excluded
    FROM flagged""",
)

# One GROUP BY, one reference to `flagged` (PostgreSQL would write a CTE read twice to disk):
# the lines of a valid order become the order; excluded lines are counted per reason.
LINES_TO_ORDERS = (
    "orders",
    """
            SELECT order_id, customer_id, ordered_at, amount,
                   CASE WHEN excluded IS NULL THEN 1 ELSE n_rows END AS n_rows,
                   COALESCE(excluded, CASE WHEN amount <= 0 THEN 'nonpositive_total' END) AS excluded
            FROM (
                SELECT order_id, customer_id, excluded, MIN(ordered_at) AS ordered_at, SUM(amount) AS amount,
                       COUNT(*) AS n_rows
                FROM (
                    SELECT CASE WHEN excluded IS NULL THEN customer_id END AS customer_id,
                           CASE WHEN excluded IS NULL THEN order_id END AS order_id,
                           ordered_at, amount, excluded
                    FROM flagged
                ) AS f
                GROUP BY customer_id, order_id, excluded
            ) AS o""",
)


def classified(late_after: dt.date, late_reason: str) -> tuple[str, str]:
    """Valid orders keep their customer; every other row keeps only its reason. Dates before
    1990 are placeholders; rows after ``late_after`` are future-dated or after ``--as-of``."""
    return (
        "classified",
        f"""
        SELECT CASE WHEN x IS NULL THEN customer_id END AS customer_id, order_id, day, amount, n_rows, x AS excluded
        FROM (
            SELECT customer_id, order_id, amount, n_rows, CAST(ordered_at AS DATE) AS day,
                   COALESCE(excluded,
                            CASE WHEN CAST(ordered_at AS DATE) < DATE '{OLDEST.isoformat()}' THEN 'too_old'
                                 WHEN CAST(ordered_at AS DATE) > DATE '{late_after.isoformat()}' THEN '{late_reason}'
                            END) AS x
            FROM orders
        ) AS flagged_dates""",
    )


def with_ctes(ctes: list[tuple[str, str]], select: str) -> str:
    return "WITH " + ",\n".join(f"{name} AS ({body}\n)" for name, body in ctes) + "\n" + select


# One row per customer and purchase day (excluded rows: per reason and day, customer NULL, with
# the number of rows or orders they stand for in n_rows); the orders relation has one row per
# valid order, so the rows of a day are its orders. The engine materialises it once, as the
# temporary table `segment_daily`; R, F, M, the exclusion counts, the gaps and the scoring all
# read it, so the order lines are scanned once.
DAILY_SELECT = """
SELECT customer_id, excluded, day, SUM(n_rows) AS n_rows, COUNT(*) AS orders,
       SUM(amount) AS amount
FROM classified
GROUP BY customer_id, excluded, day
"""

# Per customer: the last purchase day (days since 1970), orders, spend, purchase days and the
# span from first to last purchase day, in compact types (9M customers fit in ~0.5 GB), sorted by
# id (deterministic rows, and the order the assignments file is stored in). Two orders the same
# day are one purchase *occasion*: a split basket, not a return.
RFM_SELECT = f"""
SELECT customer_id,
       CAST(DATE_DIFF('day', DATE '{EPOCH.isoformat()}', MAX(day)) AS INTEGER) AS last_day,
       CAST(SUM(orders) AS INTEGER) AS frequency,
       CAST(SUM(amount) AS DOUBLE) AS monetary,
       CAST(COUNT(day) AS INTEGER) AS occasions,
       CAST(DATE_DIFF('day', MIN(day), MAX(day)) AS INTEGER) AS span
FROM segment_daily WHERE excluded IS NULL
GROUP BY customer_id
ORDER BY customer_id
"""

# The rows left out, per reason.
EXCLUDED_SELECT = """
SELECT excluded, CAST(SUM(n_rows) AS BIGINT) AS n_rows
FROM segment_daily WHERE excluded IS NOT NULL
GROUP BY excluded
"""


# The shop's repurchase gaps: every gap between consecutive purchase days of a returning
# customer, each customer weighing 1 in total (a wholesaler's most frequent buyers would
# otherwise decide the shop's "typical" return time alone): the weighted lower quantiles at 50%,
# 80% and 95%, the number of returning customers and of gaps.
GAP_QUANTILES = (0.5, 0.8, 0.95)


GAPS_SELECT = """
SELECT MIN(CASE WHEN share >= 0.5 - 1e-9 THEN gap END) AS p50,
       MIN(CASE WHEN share >= 0.8 - 1e-9 THEN gap END) AS p80,
       MIN(CASE WHEN share >= 0.95 - 1e-9 THEN gap END) AS p95,
       CAST(ROUND(COALESCE(SUM(w), 0)) AS INTEGER) AS returning_customers,
       COUNT(*) AS gaps
FROM (
    SELECT gap, w,
           SUM(w) OVER (ORDER BY gap NULLS FIRST ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
             / SUM(w) OVER () AS share
    FROM (
        SELECT gap, CAST(1 AS DOUBLE) / COUNT(*) OVER (PARTITION BY customer_id) AS w
        FROM (
            SELECT customer_id,
                   DATE_DIFF('day', LAG(day) OVER (PARTITION BY customer_id ORDER BY day NULLS FIRST), day) AS gap
            FROM (SELECT customer_id, day FROM segment_daily WHERE excluded IS NULL) AS days
        ) AS g
        WHERE gap IS NOT NULL
    ) AS weighted
) AS cumulative
"""


def customers(snapshot: dt.date) -> tuple[str, str]:
    """Per-customer RFM as of ``snapshot``, for scoring inside the engine."""
    last = f"DATE_DIFF('day', DATE '{EPOCH.isoformat()}', MAX(day))"
    return (
        "customers",
        f"""
        SELECT customer_id,
               {(snapshot - EPOCH).days} - {last} AS recency, {last} AS last_day,
               SUM(orders) AS frequency,
               CAST(SUM(amount) AS DOUBLE) AS monetary,
               COUNT(day) AS occasions,
               CASE WHEN COUNT(day) > 1
                    THEN CAST(DATE_DIFF('day', MIN(day), MAX(day)) AS DOUBLE) / (COUNT(day) - 1)
               END AS gap
        FROM segment_daily WHERE excluded IS NULL
        GROUP BY customer_id""",
    )


LATEST_SELECT = (
    f"SELECT DATE_DIFF('day', DATE '{EPOCH.isoformat()}', MAX(day)) FROM segment_daily WHERE excluded IS NULL"
)
TALLY_SELECT = """
SELECT cluster, at_risk, COUNT(*) AS customers, SUM(monetary) AS revenue, MAX(last_day) AS last_day
FROM segment_scored GROUP BY cluster, at_risk
"""
AT_RISK_ROWS_SELECT = """
SELECT customer_id, recency, frequency, monetary, occasions, gap, cluster
FROM segment_scored WHERE at_risk = 1 ORDER BY customer_id
"""
