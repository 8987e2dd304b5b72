"""Where order history comes from, and the one RFM aggregation over it.

Every source is turned into the same *orders relation*, one row per order:

    order_id, customer_id, ordered_at (TIMESTAMP), amount (DECIMAL), excluded (reason or NULL)

and ``RFM_SQL`` aggregates that relation per customer; ``GAPS_SQL`` measures how long the
shop's returning customers take to come back (the gaps between their purchase days). The aggregation is plain SQL so that it
runs where the data lives: DuckDB over CSV/Parquet files here, and any SQL warehouse later.
DuckDB streams the files and spills to disk, so memory stays bounded for 10M+ orders.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .errors import DataError

# Stable keys of the exclusion counts (they appear in --json output) and how to say them.
EXCLUSION_LABELS: dict[str, str] = {
    "not_delivered": "orders not delivered",
    "without_payment": "delivered orders without any payment row",
    "without_customer": "rows without a customer id",
    "without_order": "rows without an order id",
    "bad_date": "rows with an unparseable date",
    "bad_amount": "rows with an unparseable amount",
    "nonpositive_total": "orders whose total is not positive (returns, cancellations)",
    "after_as_of": "orders after the --as-of date",
    "future_date": "orders dated in the future (after tomorrow, UTC)",
    "too_old": "orders dated before 1990 (placeholder dates)",
}

OLIST_FILES = {
    "orders": "olist_orders_dataset",
    "payments": "olist_order_payments_dataset",
    "customers": "olist_customers_dataset",
}
OLIST_COLUMNS = {
    "orders": ("order_id", "customer_id", "order_status", "order_purchase_timestamp"),
    "payments": ("order_id", "payment_value"),
    "customers": ("customer_id", "customer_unique_id"),
}

# The one definition of RFM. `{orders}` is a relation with the columns above (valid rows
# only); `?` is the snapshot date. Dates subtract to whole days in DuckDB and PostgreSQL.
# Besides R, F and M: `occasions`, the number of distinct days with an order (two orders placed
# the same day are one purchase occasion: a split basket, not a return), and `gap`, the
# customer's own usual time between purchase days (first to last, over occasions - 1; NULL for
# customers with a single purchase day).
RFM_SQL = """
SELECT customer_id,
       CAST(CAST(? AS DATE) - MAX(CAST(ordered_at AS DATE)) AS INTEGER) AS recency,
       CAST(COUNT(DISTINCT order_id) AS INTEGER) AS frequency,
       CAST(SUM(amount) AS DOUBLE) AS monetary,
       CAST(COUNT(DISTINCT CAST(ordered_at AS DATE)) AS INTEGER) AS occasions,
       CASE WHEN COUNT(DISTINCT CAST(ordered_at AS DATE)) > 1
            THEN CAST(MAX(CAST(ordered_at AS DATE)) - MIN(CAST(ordered_at AS DATE)) AS DOUBLE)
                 / (COUNT(DISTINCT CAST(ordered_at AS DATE)) - 1)
       END AS gap
FROM {orders}
GROUP BY customer_id
ORDER BY customer_id
"""

# The shop's repurchase gaps: every gap between consecutive purchase days of a returning
# customer, each customer weighing 1 in total (a wholesaler's most frequent buyers would
# otherwise decide the shop's "typical" return time alone). Returns the weighted lower quantiles
# of the gaps at 50%, 80% and 95%, the number of returning customers and of gaps. Only these
# numbers leave the engine, never the gaps.
GAP_QUANTILES = (0.5, 0.8, 0.95)
GAPS_SQL = """
WITH days AS (
    SELECT DISTINCT customer_id, CAST(ordered_at AS DATE) AS day FROM {orders}
),
gaps AS (
    SELECT customer_id,
           CAST(day - LAG(day) OVER (PARTITION BY customer_id ORDER BY day) AS INTEGER) AS gap
    FROM days
),
weighted AS (
    SELECT gap, 1.0 / COUNT(*) OVER (PARTITION BY customer_id) AS w
    FROM gaps WHERE gap IS NOT NULL
),
cumulative AS (
    SELECT gap, w,
           SUM(w) OVER (ORDER BY gap ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
             / SUM(w) OVER () AS share
    FROM weighted
)
SELECT MIN(CASE WHEN share >= 0.5 - 1e-9 THEN gap END) AS p50,
       MIN(CASE WHEN share >= 0.8 - 1e-9 THEN gap END) AS p80,
       MIN(CASE WHEN share >= 0.95 - 1e-9 THEN gap END) AS p95,
       CAST(ROUND(COALESCE(SUM(w), 0)) AS INTEGER) AS returning_customers,
       COUNT(*) AS gaps
FROM cumulative
"""


@dataclass(frozen=True)
class GapStats:
    """How long returning customers took to come back: weighted quantiles of the gaps in days."""

    p50: int | None
    p80: int | None
    p95: int | None
    returning_customers: int
    gaps: int


@dataclass(frozen=True)
class OlistSource:
    """A folder in the Olist layout (plain or gzipped CSVs)."""

    folder: Path
    currency: str = "R$"  # Olist is a Brazilian marketplace

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))  # a str is welcome too

    def describe(self) -> str:
        return f"Olist folder {self.folder}"


@dataclass(frozen=True)
class TransactionsSource:
    """One CSV or Parquet export, one row per order or per order line."""

    path: Path
    customer_col: str
    date_col: str
    order_col: str | None = None
    amount_col: str | None = None
    quantity_col: str | None = None
    price_col: str | None = None
    date_format: str | None = None
    currency: str = ""

    def describe(self) -> str:
        return f"transactions file {self.path}"


Source = OlistSource | TransactionsSource


@dataclass
class RFMTable:
    """Per-customer RFM with what was left out on the way."""

    frame: pd.DataFrame  # customer_id, recency, frequency, monetary, occasions, gap
    snapshot_date: dt.date
    latest_purchase: dt.date
    orders: int
    excluded: dict[str, int] = field(default_factory=dict)
    source: str = ""
    gaps: GapStats = GapStats(None, None, None, 0, 0)
    currency: str = ""  # the symbol amounts are shown with

    @property
    def customers(self) -> int:
        return len(self.frame)


def describe_exclusions(excluded: Mapping[str, int]) -> str:
    parts = [
        f"{n:,} {_singular(EXCLUSION_LABELS.get(k, k)) if n == 1 else EXCLUSION_LABELS.get(k, k)}"
        for k, n in excluded.items()
        if n
    ]
    return "; ".join(parts) if parts else "nothing"


def _singular(label: str) -> str:
    return label.replace("orders", "order", 1).replace("rows", "row", 1)


def source_from_spec(
    path: str | os.PathLike,
    *,
    customer_col: str | None = None,
    date_col: str | None = None,
    order_col: str | None = None,
    amount_col: str | None = None,
    quantity_col: str | None = None,
    price_col: str | None = None,
    date_format: str | None = None,
    currency: str | None = None,
) -> Source:
    """Turn a ``--data`` argument and column flags into a source, checking what can be checked.
    ``currency`` is the symbol amounts are shown with (default: R$ for Olist, none otherwise)."""
    if currency is not None and (len(currency) > 5 or any(ch.isdigit() or ch.isspace() for ch in currency)):
        raise DataError(f"--currency is a short symbol such as $, € or R$; got '{currency}'")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        if any((customer_col, date_col, order_col, amount_col, quantity_col, price_col)):
            raise DataError(f"{p}: column flags apply to a single transactions file, not to an Olist folder")
        return OlistSource(p) if currency is None else OlistSource(p, currency)
    if not _is_supported_file(p):
        raise DataError(f"{p}: unsupported file type; use .csv, .csv.gz or .parquet")
    missing = [flag for flag, v in (("--customer-col", customer_col), ("--date-col", date_col)) if not v]
    if missing or customer_col is None or date_col is None:
        raise DataError(
            f"{p}: say which columns to use: {' and '.join(missing)} are required "
            "(with --amount-col, or --quantity-col and --price-col)"
        )
    if amount_col and (quantity_col or price_col):
        raise DataError(f"{p}: give either --amount-col or --quantity-col with --price-col, not both")
    if not amount_col and not (quantity_col and price_col):
        raise DataError(f"{p}: give --amount-col, or both --quantity-col and --price-col")
    return TransactionsSource(
        p, customer_col, date_col, order_col, amount_col, quantity_col, price_col, date_format, currency or ""
    )


def _is_supported_file(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith((".csv", ".csv.gz", ".parquet", ".pq"))


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(p: Path) -> str:
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return f"read_parquet({_sql_str(str(p))})"
    return f"read_csv({_sql_str(str(p))}, all_varchar=true, header=true)"


def _columns(con: duckdb.DuckDBPyConnection, p: Path) -> list[str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {_reader(p)}").fetchall()
    except duckdb.Error as exc:
        raise DataError(f"{p}: cannot be read ({_first_line(exc)})") from None
    return [r[0] for r in rows]


def _resolve_column(available: list[str], wanted: str, p: Path) -> str:
    if wanted in available:
        return wanted
    folded = [c for c in available if c.lower() == wanted.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(available[:12]) + (" …" if len(available) > 12 else "")
    raise DataError(f"{p}: no column '{wanted}' (columns are: {shown})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _timestamp_expr(col: str, date_format: str | None) -> str:
    c = _ident(col)
    if date_format:
        return f"TRY_STRPTIME(CAST({c} AS VARCHAR), {_sql_str(date_format)})"
    # ISO dates and timestamps; one with a UTC offset is converted to UTC (the session time
    # zone), one without is taken as UTC. TIMESTAMPTZ first: a plain TIMESTAMP cast would
    # silently drop the offset.
    return f"COALESCE(CAST(TRY_CAST({c} AS TIMESTAMPTZ) AS TIMESTAMP), TRY_CAST({c} AS TIMESTAMP))"


def _olist_file(folder: Path, key: str) -> Path:
    stem = OLIST_FILES[key]
    for suffix in (".csv", ".csv.gz"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: missing {stem}.csv (or {stem}.csv.gz), needed for the Olist layout")


def _check_olist_columns(con: duckdb.DuckDBPyConnection, src: OlistSource) -> None:
    """Raise a DataError naming the first file that lacks a column the Olist layout needs."""
    for key in OLIST_FILES:
        path = _olist_file(src.folder, key)
        available = _columns(con, path)
        for col in OLIST_COLUMNS[key]:
            if col not in available:
                _resolve_column(available, col, path)  # raises with the list of columns


def _olist_orders_sql(con: duckdb.DuckDBPyConnection, src: OlistSource) -> str:
    # The columns are not checked up front (sniffing three gzipped files costs a third of a
    # second on Olist): a query that fails is diagnosed with _check_olist_columns.
    files = {key: _olist_file(src.folder, key) for key in OLIST_FILES}
    amount = "TRY_CAST(payment_value AS DECIMAL(18,2))"
    return f"""
    WITH o AS (
        SELECT order_id, customer_id AS cid, lower(trim(order_status)) AS status,
               {_timestamp_expr("order_purchase_timestamp", None)} AS ordered_at
        FROM {_reader(files["orders"])}
    ),
    p AS (
        SELECT order_id, SUM({amount}) AS amount, COUNT(*) AS n_rows, COUNT({amount}) AS n_ok
        FROM {_reader(files["payments"])}
        GROUP BY order_id
    ),
    c AS (
        SELECT customer_id, MIN(NULLIF(trim(customer_unique_id), '')) AS uid
        FROM {_reader(files["customers"])}
        GROUP BY customer_id
    )
    SELECT o.order_id, c.uid AS customer_id, o.ordered_at, p.amount,
           CASE WHEN o.status IS DISTINCT FROM 'delivered' THEN 'not_delivered'
                WHEN c.uid IS NULL THEN 'without_customer'
                WHEN o.ordered_at IS NULL THEN 'bad_date'
                WHEN p.order_id IS NULL THEN 'without_payment'
                WHEN p.n_ok < p.n_rows THEN 'bad_amount'
           END AS excluded
    FROM o LEFT JOIN p USING (order_id) LEFT JOIN c ON o.cid = c.customer_id
    """


def _transactions_orders_sql(con: duckdb.DuckDBPyConnection, src: TransactionsSource) -> str:
    p = src.path
    available = _columns(con, p)
    customer = _resolve_column(available, src.customer_col, p)
    date = _resolve_column(available, src.date_col, p)
    if src.amount_col:
        amount = f"TRY_CAST({_ident(_resolve_column(available, src.amount_col, p))} AS DECIMAL(18,2))"
    else:
        assert src.quantity_col and src.price_col
        q = _ident(_resolve_column(available, src.quantity_col, p))
        pr = _ident(_resolve_column(available, src.price_col, p))
        amount = f"CAST(ROUND(TRY_CAST({q} AS DECIMAL(18,4)) * TRY_CAST({pr} AS DECIMAL(18,4)), 2) AS DECIMAL(18,2))"
    if src.order_col:
        order = f"NULLIF(trim(CAST({_ident(_resolve_column(available, src.order_col, p))} AS VARCHAR)), '')"
    else:
        order = "CAST(row_number() OVER () AS VARCHAR)"
    return f"""
    WITH r AS (
        SELECT NULLIF(trim(CAST({_ident(customer)} AS VARCHAR)), '') AS customer_id,
               {order} AS order_id,
               {_timestamp_expr(date, src.date_format)} AS ordered_at,
               {amount} AS amount
        FROM {_reader(p)}
    ),
    flagged AS (
        SELECT *, CASE WHEN customer_id IS NULL THEN 'without_customer'
                       WHEN order_id IS NULL THEN 'without_order'
                       WHEN ordered_at IS NULL THEN 'bad_date'
                       WHEN amount IS NULL THEN 'bad_amount'
                  END AS excluded
        FROM r
    ),
    bad_rows AS (
        SELECT NULL AS order_id, NULL AS customer_id, NULL::TIMESTAMP AS ordered_at,
               NULL::DECIMAL(18,2) AS amount, excluded
        FROM flagged WHERE excluded IS NOT NULL
    ),
    orders AS (
        -- an order is (customer, order id): exports that merge several stores can reuse
        -- order numbers, and those must never merge two customers
        SELECT order_id, customer_id, MIN(ordered_at) AS ordered_at, SUM(amount) AS amount
        FROM flagged WHERE excluded IS NULL
        GROUP BY customer_id, order_id
    )
    SELECT order_id, customer_id, ordered_at, amount,
           CASE WHEN amount <= 0 THEN 'nonpositive_total' END AS excluded
    FROM orders
    UNION ALL
    SELECT * FROM bad_rows
    """


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to a temporary folder instead of running out of memory."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = {_sql_str(tempfile.gettempdir())}")
    return con


def load_rfm(source: Source, as_of: dt.date | None = None) -> RFMTable:
    """Read a source and aggregate it into per-customer RFM."""
    con = connect()
    try:
        if isinstance(source, OlistSource):
            orders_sql = _olist_orders_sql(con, source)
            where = source.folder
        else:
            orders_sql = _transactions_orders_sql(con, source)
            where = source.path
        try:
            con.execute(f"CREATE TEMP TABLE orders AS {orders_sql}")
            return replace(_aggregate(con, as_of, source.describe(), where), currency=source.currency)
        except duckdb.Error as exc:
            if isinstance(source, OlistSource):
                _check_olist_columns(con, source)
            raise DataError(f"{where}: cannot be read ({_first_line(exc)})") from None
    finally:
        con.close()


def _aggregate(con, as_of: dt.date | None, description: str, where: Path) -> RFMTable:
    excluded = {
        key: int(n)
        for key, n in con.execute(
            "SELECT excluded, COUNT(*) FROM orders WHERE excluded IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }
    (ancient,) = con.execute(  # 1900-01-01 and friends are placeholders, not purchases
        "SELECT COUNT(*) FROM orders WHERE excluded IS NULL AND CAST(ordered_at AS DATE) < DATE '1990-01-01'"
    ).fetchone()
    if ancient:
        con.execute(
            "UPDATE orders SET excluded = 'too_old' "
            "WHERE excluded IS NULL AND CAST(ordered_at AS DATE) < DATE '1990-01-01'"
        )
        excluded["too_old"] = int(ancient)
    if as_of is None:  # a mistyped year must not become the snapshot date of every customer
        tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        (future,) = con.execute(
            "SELECT COUNT(*) FROM orders WHERE excluded IS NULL AND CAST(ordered_at AS DATE) > ?", [tomorrow]
        ).fetchone()
        if future:
            con.execute(
                "UPDATE orders SET excluded = 'future_date' WHERE excluded IS NULL AND CAST(ordered_at AS DATE) > ?",
                [tomorrow],
            )
            excluded["future_date"] = int(future)
    (latest,) = con.execute("SELECT MAX(CAST(ordered_at AS DATE)) FROM orders WHERE excluded IS NULL").fetchone()
    if latest is None:
        raise DataError(f"{where}: no usable orders left after filtering (excluded: {describe_exclusions(excluded)})")
    snapshot = as_of or (latest + dt.timedelta(days=1))
    (after,) = con.execute(
        "SELECT COUNT(*) FROM orders WHERE excluded IS NULL AND CAST(ordered_at AS DATE) > ?",
        [snapshot],
    ).fetchone()
    if after:
        excluded["after_as_of"] = int(after)
    con.execute(
        "CREATE TEMP VIEW valid_orders AS SELECT * FROM orders WHERE excluded IS NULL "
        f"AND CAST(ordered_at AS DATE) <= DATE '{snapshot.isoformat()}'"
    )
    n_orders, latest = con.execute("SELECT COUNT(*), MAX(CAST(ordered_at AS DATE)) FROM valid_orders").fetchone()
    if not n_orders:
        raise DataError(
            f"{where}: no orders on or before {snapshot.isoformat()} (excluded: {describe_exclusions(excluded)})"
        )
    frame = con.execute(RFM_SQL.format(orders="valid_orders"), [snapshot]).df()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["gap"] = frame["gap"].astype(np.float64)
    p50, p80, p95, returning, n_gaps = con.execute(GAPS_SQL.format(orders="valid_orders")).fetchone()
    gaps = GapStats(
        None if p50 is None else int(p50),
        None if p80 is None else int(p80),
        None if p95 is None else int(p95),
        int(returning or 0),
        int(n_gaps or 0),
    )
    return RFMTable(
        frame=frame,
        snapshot_date=snapshot,
        latest_purchase=latest,
        orders=int(n_orders),
        excluded=excluded,
        source=description,
        gaps=gaps,
    )
