"""The kinds of source the product reads, the RFM table read from one, and what was excluded on the way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.data import olist_sql
from segmentation.data import relations as rel
from segmentation.data.urls import mask
from segmentation.model.outlook import History
from segmentation.model.survival import FirstReturns

if TYPE_CHECKING:
    import pandas as pd


EXCLUSION_LABELS: dict[str, str] = {
    "not_delivered": "orders not delivered",
    "without_payment": "delivered orders without any payment row",
    "without_customer": "rows without a customer id",
    "without_order": "rows without an order id",
    "bad_date": "rows with an unparseable date",
    "bad_amount": "rows with an unparseable amount",
    "returned": "orders with a negative total (returns, cancellations), netted against their customer's spend",
    "nonpositive_total": "orders whose total is not positive (returns, cancellations)",
    "too_old": "orders dated before 1990 (placeholder dates)",
    "future_date": "orders dated in the future (after tomorrow, UTC)",
    "after_as_of": "orders after the --as-of date",
    "net_nonpositive": "customers left with no positive spend once their returns are netted",
}

_REASON_ORDER = {key: i for i, key in enumerate(EXCLUSION_LABELS)}
OLIST_FILES = olist_sql.OLIST_TABLES
LAYOUTS = ("olist", "transactions")  # what ``segment sample-data`` writes
OLIST_COLUMNS = olist_sql.OLIST_COLUMNS


@dataclass(frozen=True)
class OlistSource:
    """A folder in the Olist layout (plain or gzipped CSVs)."""

    folder: Path
    currency: str = "R$"  # Olist is a Brazilian marketplace
    label: str = ""  # how it is called when not by its folder (the built-in sample)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))  # a str is welcome too

    def describe(self) -> str:
        return self.label or f"Olist folder {self.folder}"


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
    category_col: str | None = None  # on order lines: the segments' personas
    decimal_comma: bool = False  # amounts written 10,50 or 1.234,56 (--decimal ,)
    net_returns: bool = True  # negative orders netted against spend (--returns already-netted: left out)

    def describe(self) -> str:
        return f"transactions file {self.path}"


@dataclass(frozen=True)
class DatabaseSource:
    """Order history in a database: a table (``--table``, optionally ``--schema``), a query
    (``--query``) or the three Olist tables (``--layout olist``). The URL may carry a password;
    it is only ever shown masked."""

    url: str
    table: str | None = None
    query: str | None = None
    schema: str | None = None
    layout: str = "transactions"  # or "olist"
    columns: rel.Columns | None = None
    currency: str = ""
    net_returns: bool = True

    def describe(self) -> str:
        what = self.table or ("query" if self.query else "Olist tables")
        if self.schema and self.table:
            what = f"{self.schema}.{self.table}"
        return f"{mask(self.url)} ({what})"

    def __repr__(self) -> str:  # never the password, even in a debug print
        return f"DatabaseSource({self.describe()!r})"


@dataclass(frozen=True)
class SparkSource:
    """Order history read by Spark: a table name, a Parquet/Delta path, or a Spark SQL query."""

    target: str
    columns: rel.Columns
    query: str | None = None
    currency: str = ""
    net_returns: bool = True

    def describe(self) -> str:
        return f"Spark {'query' if self.query else self.target}"


Source = OlistSource | TransactionsSource | DatabaseSource | SparkSource


@dataclass(frozen=True)
class SetAsideIds:
    """The customer ids of an RFM table, in its frame's order, kept in an Arrow file instead of
    the frame (training's read: 36 bytes a customer out of memory); ``ordered``: sorted as text."""

    path: Path
    rows: int
    ordered: bool


@dataclass
class RFMTable:
    """Per-customer RFM with what was left out on the way."""

    frame: pd.DataFrame  # customer_id, recency, frequency, monetary, occasions, gap
    snapshot_date: dt.date
    latest_purchase: dt.date
    orders: int
    excluded: dict[str, int] = field(default_factory=dict)
    source: str = ""
    gaps: FirstReturns = field(default_factory=FirstReturns)  # the customers' first returns
    currency: str = ""  # the symbol amounts are shown with
    history: History | None = None  # the windows of the same history, for the chance to buy again
    as_of: dt.date | None = None  # the --as-of date the table was read as of, if any
    ids: SetAsideIds | None = None  # set: the frame has no customer_id column, the ids are in this file

    @property
    def customers(self) -> int:
        return len(self.frame)

    @property
    def idle_days(self) -> int:
        """Days the snapshot lies beyond the day after the latest purchase (an --as-of later than the data)."""
        return max((self.snapshot_date - self.latest_purchase).days - 1, 0)

    @property
    def last_day(self) -> dt.date:
        """The last day of the history: the --as-of date (its orders included), else the latest purchase."""
        return self.as_of or self.latest_purchase


def describe_exclusions(excluded: Mapping[str, int]) -> str:
    parts = [
        f"{n:,} {_singular(EXCLUSION_LABELS.get(k, k)) if n == 1 else EXCLUSION_LABELS.get(k, k)}"
        for k, n in excluded.items()
        if n
    ]
    return "; ".join(parts) if parts else "nothing"


def _singular(label: str) -> str:
    return label.replace("orders", "order", 1).replace("rows", "row", 1).replace("customers", "customer", 1)
