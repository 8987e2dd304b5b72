"""Where order history comes from: files (Olist folder, a transactions CSV/Parquet), a database
(PostgreSQL, MySQL/MariaDB, or a warehouse with a SQLAlchemy driver) or Spark; and ``load_rfm``,
which runs the one RFM definition (``relations``) inside that engine and brings back only
per-customer rows. DuckDB reads files, streaming them and spilling to disk, so memory stays
bounded by the number of customers, not of orders.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import relations as rel
from .engines import DatabaseEngine, DuckDBEngine, Engine, SparkEngine, ident, is_url, mask, mask_text, sql_str
from .errors import DataError
from .survival import FirstReturns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# Stable keys of the exclusion counts (they appear in --json output) and how to say them.
EXCLUSION_LABELS: dict[str, str] = {
    "not_delivered": "orders not delivered",
    "without_payment": "delivered orders without any payment row",
    "without_customer": "rows without a customer id",
    "without_order": "rows without an order id",
    "bad_date": "rows with an unparseable date",
    "bad_amount": "rows with an unparseable amount",
    "nonpositive_total": "orders whose total is not positive (returns, cancellations)",
    "too_old": "orders dated before 1990 (placeholder dates)",
    "future_date": "orders dated in the future (after tomorrow, UTC)",
    "after_as_of": "orders after the --as-of date",
}

_REASON_ORDER = {key: i for i, key in enumerate(EXCLUSION_LABELS)}
OLIST_FILES = rel.OLIST_TABLES
OLIST_COLUMNS = rel.OLIST_COLUMNS


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
    category_col: str | None = None  # on order lines: the segments' personas

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

    def describe(self) -> str:
        return f"Spark {'query' if self.query else self.target}"


Source = OlistSource | TransactionsSource | DatabaseSource | SparkSource


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
    category_col: str | None = None,
    date_format: str | None = None,
    currency: str | None = None,
    table: str | None = None,
    query: str | None = None,
    schema: str | None = None,
    layout: str | None = None,
) -> Source:
    """Turn a ``--data`` argument and its flags into a source, checking what can be checked
    without reading. ``currency`` is the symbol amounts are shown with (default: R$ for Olist,
    none otherwise)."""
    if currency is not None and (len(currency) > 5 or any(ch.isdigit() or ch.isspace() for ch in currency)):
        raise DataError(f"--currency is a short symbol such as $, € or R$; got '{currency}'")
    if layout not in (None, "olist", "transactions"):
        raise DataError(f"--layout is olist or transactions; got '{layout}'")
    spec = os.fspath(path)
    flags = dict(
        customer_col=customer_col,
        date_col=date_col,
        order_col=order_col,
        amount_col=amount_col,
        quantity_col=quantity_col,
        price_col=price_col,
        category_col=category_col,
    )
    if spec.startswith("spark:"):
        return _spark_source(spec, flags, date_format, query, table, schema, layout, currency)
    if is_url(spec):
        return _database_source(spec, flags, date_format, query, table, schema, layout, currency)
    used = [f for f, v in (("--table", table), ("--query", query), ("--schema", schema), ("--layout", layout)) if v]
    if used:
        raise DataError(
            f"{' and '.join(used)} apply to a database or Spark source (--data postgresql://…), not to files"
        )
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{mask_text(str(p))}: no such file or folder")
    if p.is_dir():
        if any(flags.values()):
            raise DataError(f"{p}: column flags apply to a single transactions file, not to an Olist folder")
        return OlistSource(p) if currency is None else OlistSource(p, currency)
    if not _is_supported_file(p):
        raise DataError(f"{p}: unsupported file type; use .csv, .csv.gz or .parquet")
    cols = _columns_from_flags(str(p), flags)
    return TransactionsSource(
        p,
        cols.customer,
        cols.date,
        cols.order,
        cols.amount,
        cols.quantity,
        cols.price,
        date_format,
        currency or "",
        cols.category,
    )


def _columns_from_flags(where: str, flags: dict[str, str | None]) -> rel.Columns:
    customer, date = flags["customer_col"], flags["date_col"]
    missing = [flag for flag, v in (("--customer-col", customer), ("--date-col", date)) if not v]
    if missing or customer is None or date is None:
        raise DataError(
            f"{where}: say which columns to use: {' and '.join(missing)} are required "
            "(with --amount-col, or --quantity-col and --price-col)"
        )
    amount, quantity, price = flags["amount_col"], flags["quantity_col"], flags["price_col"]
    if amount and (quantity or price):
        raise DataError(f"{where}: give either --amount-col or --quantity-col with --price-col, not both")
    if not amount and not (quantity and price):
        raise DataError(f"{where}: give --amount-col, or both --quantity-col and --price-col")
    return rel.Columns(customer, date, flags["order_col"], amount, quantity, price, flags.get("category_col"))


def _database_source(url, flags, date_format, query, table, schema, layout, currency) -> DatabaseSource:
    where = mask(url)
    if date_format:
        raise DataError(f"{where}: --date-format applies to files; a database's date column is read as a timestamp")
    if layout == "olist":
        if table or query or any(flags.values()):
            raise DataError(
                f"{where}: --layout olist reads the three Olist tables; drop --table, --query and the column flags"
            )
        return DatabaseSource(url, schema=schema, layout="olist", currency="R$" if currency is None else currency)
    if bool(table) == bool(query):
        raise DataError(f"{where}: give --table (with --schema if needed) or --query, or --layout olist")
    if query and schema:
        raise DataError(f"{where}: --schema goes with --table; a --query names its own tables")
    cols = _columns_from_flags(where, flags)
    return DatabaseSource(
        url, table=table, query=_one_statement(query), schema=schema, columns=cols, currency=currency or ""
    )


def _spark_source(spec, flags, date_format, query, table, schema, layout, currency) -> SparkSource:
    target = spec[len("spark:") :].strip() or (table or "")
    if date_format or schema or layout == "olist":
        raise DataError("spark: --date-format, --schema and --layout olist are not supported for Spark sources")
    if bool(target) == bool(query):
        raise DataError(
            "spark: give a table name or a Parquet/Delta path (spark:orders, spark:/data/orders.parquet) or --query"
        )
    return SparkSource(target, _columns_from_flags(spec, flags), _one_statement(query), currency or "")


def _one_statement(query: str | None) -> str | None:
    if query is None:
        return None
    q = query.strip().rstrip(";").strip()
    if not q:
        raise DataError("--query is empty")
    return q


def _is_supported_file(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith((".csv", ".csv.gz", ".parquet", ".pq"))


def _reader(p: Path) -> str:
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return f"read_parquet({sql_str(str(p))})"
    return f"read_csv({sql_str(str(p))}, all_varchar=true, header=true)"


def _resolve_column(available: list[str], wanted: str, where: object) -> str:
    if wanted in available:
        return wanted
    folded = [c for c in available if c.lower() == wanted.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(available[:12]) + (" …" if len(available) > 12 else "")
    raise DataError(f"{where}: no column '{wanted}' (columns are: {shown})")


def _resolve_columns(available: list[str], cols: rel.Columns, where: object) -> rel.Columns:
    def one(name: str | None) -> str | None:
        return None if name is None else _resolve_column(available, name, where)

    return rel.Columns(
        _resolve_column(available, cols.customer, where),
        _resolve_column(available, cols.date, where),
        one(cols.order),
        one(cols.amount),
        one(cols.quantity),
        one(cols.price),
        one(cols.category),
    )


def _olist_file(folder: Path, key: str) -> Path:
    stem = OLIST_FILES[key]
    for suffix in (".csv", ".csv.gz"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: missing {stem}.csv (or {stem}.csv.gz), needed for the Olist layout")


def _check_olist_columns(engine, refs: Mapping[str, str], where_of: Mapping[str, object]) -> None:
    """Raise a DataError naming the first table or file that lacks a column the Olist layout needs."""
    for key in OLIST_FILES:
        available = engine.columns(refs[key])
        for col in OLIST_COLUMNS[key]:
            if col not in available:
                _resolve_column(available, col, where_of[key])  # raises with the list of columns


@dataclass
class _Plan:
    """A source opened in its engine: the CTEs that define its orders relation."""

    engine: Engine
    ctes: list[tuple[str, str]]  # ... ending in `orders`, every row with its reason to be left out or NULL
    valid: list[tuple[str, str]]  # ... ending in `valid_orders`, the orders kept (the same checks)
    relation: str | None = None  # a user's own query, spliced in after compiling
    diagnose: Callable[[], None] | None = None  # called when a query fails, to name a missing table or column
    # the personas' CTEs (ending in `facet_rows`) as of a date, given the relation of the valid
    # orders; empty when there is nothing to describe. It may look for the optional tables, so it
    # is only called when personas are wanted; `persona_orders` says whether it reads the orders.
    persona: Callable[[dt.date, str], list[tuple[str, str]]] | None = None
    persona_orders: bool = False


def _plan(source: Source, keep_files: bool = False) -> _Plan:
    """Open the source's engine and write its orders relation; the engine is closed if that fails.
    ``keep_files``: an Olist folder's three files are read into the engine once, for a training
    pass that reads them again for the personas."""
    opened: list[Engine] = []
    try:
        return _open_plan(source, opened, keep_files)
    except BaseException:
        for engine in opened:
            engine.close()
        raise


def _open_plan(source: Source, opened: list[Engine], keep_files: bool = False) -> _Plan:
    engine: DuckDBEngine | DatabaseEngine
    if isinstance(source, OlistSource):
        engine = DuckDBEngine(str(source.folder))
        opened.append(engine)
        files = {key: _olist_file(source.folder, key) for key in OLIST_FILES}
        refs = {key: _reader(path) for key, path in files.items()}
        extras = _olist_extras(source.folder) if keep_files else {}
        refs.update({key: _reader(path) for key, path in extras.items()})
        loaded = _load_files(engine, {**files, **extras})
        refs.update(loaded)
        olist = (refs["orders"], refs["payments"], refs["customers"], rel.Reading("TRY_CAST"))
        # the columns are not checked up front (sniffing three gzipped files costs a third of a
        # second on Olist): a query that fails is diagnosed
        return _Plan(
            engine,
            rel.olist_orders(*olist),
            rel.olist_valid_orders(*olist),
            diagnose=lambda: _check_olist_columns(engine, refs, files),
            persona=lambda late, orders: _olist_folder_persona(source.folder, refs, orders),
            persona_orders=True,
        )
    if isinstance(source, TransactionsSource):
        engine = DuckDBEngine(str(source.path))
        opened.append(engine)
        ref = _reader(source.path)
        cols = rel.Columns(
            source.customer_col,
            source.date_col,
            source.order_col,
            source.amount_col,
            source.quantity_col,
            source.price_col,
            source.category_col,
        )
        cols = _resolve_columns(engine.columns(ref), cols, source.path)
        return _transactions_plan(engine, ref, cols, rel.Reading("TRY_CAST", source.date_format))
    if isinstance(source, DatabaseSource):
        engine = DatabaseEngine(source.url)
        opened.append(engine)
        where = engine.where
        if source.layout == "olist":
            refs = {
                key: (ident(source.schema) + "." if source.schema else "") + ident(name)
                for key, name in OLIST_FILES.items()
            }
            compiled_refs = {key: _compiled_ref(ref, engine.dialect) for key, ref in refs.items()}
            names = {key: f"{where} table {name}" for key, name in OLIST_FILES.items()}
            for key in OLIST_FILES:  # cheap on a database: a missing table or column is one clear line
                available = engine.columns(compiled_refs[key])
                for col in OLIST_COLUMNS[key]:
                    _resolve_column(available, col, names[key])
            olist = (refs["orders"], refs["payments"], refs["customers"], rel.Reading())
            return _Plan(
                engine,
                rel.olist_orders(*olist),
                rel.olist_valid_orders(*olist),
                persona=lambda late, orders: _olist_tables_persona(engine, source.schema, refs, orders),
                persona_orders=True,
            )
        assert source.columns is not None
        if source.query is not None:
            available = engine.columns(f"(\n{source.query}\n)")
            ref, relation = rel.PLACEHOLDER, source.query
        else:
            assert source.table is not None
            ref = (ident(source.schema) + "." if source.schema else "") + ident(source.table)
            available = engine.columns(_compiled_ref(ref, engine.dialect))
            relation = None
        cols = _resolve_columns(available, source.columns, where)
        order_key = bool(cols.order and source.table and engine.is_key(source.table, source.schema, cols.order))
        return _transactions_plan(engine, ref, cols, rel.Reading(), order_key, relation)
    spark = SparkEngine(source.describe())
    opened.append(spark)
    spark.register("segment_source", source.target, source.query)
    cols = _resolve_columns(spark.columns("segment_source"), source.columns, source.describe())
    return _transactions_plan(spark, "segment_source", cols, rel.Reading())


def _transactions_plan(
    engine: Engine,
    ref: str,
    cols: rel.Columns,
    reading: rel.Reading,
    order_is_key: bool = False,
    relation: str | None = None,
) -> _Plan:
    def persona(late: dt.date, orders: str) -> list[tuple[str, str]]:
        return rel.transactions_persona(ref, cols, reading, late)

    return _Plan(
        engine,
        rel.transactions_orders(ref, cols, reading, order_is_key),
        rel.transactions_valid_orders(ref, cols, reading, order_is_key),
        relation,
        persona=persona if cols.category else None,
    )


# What each facet of an Olist persona needs: (table, columns) that must all be there.
_OLIST_FACETS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "category": (("items", ("order_id", "product_id", "price")), ("products", ("product_id", "product_category_name"))),
    "translation": (("translation", ("product_category_name", "product_category_name_english")),),
    "payment": (("payments", ("payment_type", "payment_value")),),
    "instalments": (("payments", ("payment_installments",)),),
    "state": (("customers", ("customer_state",)),),
}


def _olist_have(columns_of: Callable[[str], list[str] | None]) -> frozenset[str]:
    """The facets whose tables and columns exist (``columns_of`` gives None for a missing table)."""
    have = set()
    for facet, needs in _OLIST_FACETS.items():
        if all((cols := columns_of(table)) is not None and set(wanted) <= set(cols) for table, wanted in needs):
            have.add(facet)
    if "category" not in have:
        have.discard("translation")
    return frozenset(have)


def _olist_extras(folder: Path) -> dict[str, Path]:
    """The optional Olist files present in ``folder`` (items, products, translation)."""
    paths: dict[str, Path] = {}
    for key, stem in rel.OLIST_PERSONA_TABLES.items():
        for suffix in (".csv", ".csv.gz"):
            if (folder / f"{stem}{suffix}").exists():
                paths[key] = folder / f"{stem}{suffix}"
                break
    return paths


def _has_olist_extras(folder: Path) -> bool:
    return {"items", "products"} <= set(_olist_extras(folder))


def _olist_folder_persona(folder: Path, refs: Mapping[str, str], orders: str) -> list[tuple[str, str]]:
    paths = {**_olist_extras(folder), **{key: _olist_file(folder, key) for key in OLIST_FILES}}
    all_refs = {**{key: _reader(path) for key, path in paths.items()}, **refs}
    have = _olist_have(lambda key: _csv_header(paths[key]) if key in paths else None)
    return rel.olist_persona(all_refs, rel.Reading("TRY_CAST"), have, orders)


# Olist files together under this size are read into the engine's memory first, each file on
# its own thread (gzip is read on one core per file): the training pass and the personas then
# read memory. Larger folders are streamed from the files by every query instead.
LOAD_LIMIT = 256 << 20
_OLIST_WANTED = {
    "orders": ("order_id", "customer_id", "order_status", "order_purchase_timestamp"),
    "payments": ("order_id", "payment_value", "payment_type", "payment_installments"),
    "customers": ("customer_id", "customer_unique_id", "customer_state"),
    "items": ("order_id", "product_id", "price"),
    "products": ("product_id", "product_category_name"),
    "translation": ("product_category_name", "product_category_name_english"),
}


def _load_files(engine: DuckDBEngine, paths: Mapping[str, Path]) -> dict[str, str]:
    """Read the columns the product uses of small Olist files into memory tables, concurrently;
    returns their names by key (nothing when the files are large, or a header lacks a column
    the layout needs: the queries then read the files and say what is wrong)."""
    if sum(p.stat().st_size for p in paths.values()) > LOAD_LIMIT:
        return {}
    selects = {}
    for key, path in paths.items():
        header = _csv_header(path) or []
        folded = {c.lower(): c for c in header}
        if any(col.lower() not in folded for col in OLIST_COLUMNS.get(key, ())):
            return {}
        cols = [folded[c.lower()] for c in _OLIST_WANTED[key] if c.lower() in folded]
        selects[key] = f"SELECT {', '.join(ident(c) for c in cols)} FROM {_reader(path)}"
    names = {key: f"segment_file_{key}" for key in selects}
    errors: list[BaseException] = []

    def load(key: str) -> None:
        try:
            with engine.con.cursor() as cur:  # a connection of its own to the same in-memory database
                cur.execute(f"CREATE TABLE {names[key]} AS {selects[key]}")
        except Exception as exc:  # a damaged file: the queries over the files name it
            errors.append(exc)

    import threading

    threads = [threading.Thread(target=load, args=(key,)) for key in selects]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for name in names.values():
            engine.con.execute(f"DROP TABLE IF EXISTS {name}")
        return {}
    return names


def _csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file (plain or gzipped) from its first line, without reading on."""
    import csv
    import gzip

    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader([fh.readline()]), None)
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def _olist_tables_persona(
    engine: DatabaseEngine, schema: str | None, refs: Mapping[str, str], orders: str
) -> list[tuple[str, str]]:
    all_refs = dict(refs)
    for key, name in rel.OLIST_PERSONA_TABLES.items():
        all_refs[key] = (ident(schema) + "." if schema else "") + ident(name)

    def columns_of(key: str) -> list[str] | None:
        try:
            return engine.columns(_compiled_ref(all_refs[key], engine.dialect))
        except DataError:
            return None

    return rel.olist_persona(all_refs, rel.Reading(), _olist_have(columns_of), orders)


def _compiled_ref(ref: str, dialect: str) -> str:
    """A table reference written for DuckDB, as the engine spells it (quoting differs)."""
    from .dialects import compile_sql

    compiled = compile_sql(f"SELECT * FROM {ref}", dialect)
    return compiled[len("SELECT * FROM ") :]


@contextlib.contextmanager
def _diagnosed(plan: _Plan) -> Iterator[Engine]:
    """The plan's engine; a failure is diagnosed (a missing file or column named) and the engine
    is always closed."""
    try:
        try:
            yield plan.engine
        except DataError:
            if plan.diagnose is not None:
                plan.diagnose()
            raise
    finally:
        plan.engine.close()


def load_rfm(source: Source, as_of: dt.date | None = None) -> RFMTable:
    """Aggregate a source into per-customer RFM inside its engine (see ``relations``: the
    per-day table materialised once, or the three reads asked directly on two connections). The
    engine is closed (its memory freed) before the per-customer rows become a frame; the
    table's ``history`` reopens the source when the windows are asked for."""
    with opened(source, as_of) as src:
        fetched = src.fetch()
    table = _rfm_table(fetched, as_of, src.where, source.describe(), source.currency)
    table.history = Reopened(source)
    return table


@contextlib.contextmanager
def opened(
    source: Source, as_of: dt.date | None = None, personas: bool = False, keep: bool = True
) -> Iterator[OpenSource]:
    """The source opened in its engine for a training pass: ``rfm()``, the windows of its
    history (``windows``), then (with ``personas``) ``personas(trained)`` from the same pass
    where the engine keeps it; always closed after. ``keep=False`` closes the engine as soon as
    the per-customer rows are read (the windows then reopen the source)."""
    src = OpenSource(source, as_of, personas, keep)
    try:
        yield src
    finally:
        src.close()


class History(Protocol):
    """Where the windows of a shop's history come from (``relations.windows_select``)."""

    def windows(self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1) -> pd.DataFrame: ...


class Reopened:
    """A source's history read on a fresh connection (after its training pass was closed)."""

    def __init__(self, source: Source):
        self.source = source

    def windows(self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1) -> pd.DataFrame:
        plan = _plan(self.source)
        with _diagnosed(plan) as engine:
            sample = engine.bucket("customer_id", buckets, 0) if buckets > 1 else None
            ctes = [*plan.valid, rel.valid_days(until), rel.PER_DAY]
            table = engine.table(rel.with_ctes(ctes, rel.windows_select(cutoffs, horizon, sample)), plan.relation)
        return window_frame(table)


class OpenSource:
    """One training pass over a source (``opened``)."""

    def __init__(self, source: Source, as_of: dt.date | None, personas: bool, keep: bool = True):
        self.source, self.as_of = source, as_of
        self.want_personas = personas
        self.keep = keep
        self._plan: _Plan | None = None  # opened by the first read
        self.closed = False
        self.daily = False  # the per-day table is materialised in the open engine
        self.where, self.direct, self.keep_orders = source.describe(), False, False

    @property
    def plan(self) -> _Plan:
        if self._plan is None:
            self._plan = _plan(self.source, keep_files=self.want_personas)
            self.where = self._plan.engine.where
            self.direct = self._plan.engine.sessions() > 1
            # the orders are kept for the personas of an Olist layout read in one pass
            self.keep_orders = (
                self.want_personas and not self.direct and self._plan.persona is not None and self._plan.persona_orders
            )
        return self._plan

    def fetch(self, as_of: dt.date | None = None) -> _Fetched:
        """What training needs as of ``as_of`` (default: the pass's own date). An earlier date
        is read from the same per-day table, with the later orders counted as after it."""
        as_of = as_of if as_of is not None else self.as_of
        if self.as_of is not None and as_of is not None and as_of > self.as_of:
            raise DataError(f"{self.where}: this pass ends on {self.as_of.isoformat()}, not after")
        plan = self.plan
        if self.direct:
            if self.closed:
                plan = _plan(self.source)
            try:
                return _fetch_direct(self.source, plan, as_of)
            finally:
                plan.engine.close()
                self.closed = True
        if self.closed:
            raise DataError(f"{self.where}: this pass is closed")
        with _diagnosed_open(plan) as engine:
            if not self.daily:
                ctes = orders_ctes(plan, self.as_of)
                if self.keep_orders:
                    engine.materialise(
                        "segment_classified", rel.with_ctes(ctes, "SELECT * FROM classified"), plan.relation
                    )
                    ctes, relation = [("classified", "SELECT * FROM segment_classified")], None
                else:
                    relation = plan.relation
                engine.materialise("segment_daily", rel.with_ctes(ctes, rel.DAILY_SELECT), relation)
                self.daily = True
            if as_of is not None and as_of != self.as_of:
                days = [rel.per_day_until(as_of), rel.excluded_until(as_of)]
            else:
                days = rel.MATERIALISED
            fetched = _fetch(engine, days, days, None)
        if not self.keep and not (self.want_personas and self.plan.persona is not None):
            self.close()  # its memory back before the frame is built
        return fetched

    def rfm(self, as_of: dt.date | None = None) -> RFMTable:
        as_of = as_of if as_of is not None else self.as_of
        table = _rfm_table(self.fetch(as_of), as_of, self.where, self.source.describe(), self.source.currency)
        table.history = self
        return table

    def windows(self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1) -> pd.DataFrame:
        """Every customer as of each cut-off with what they did in the ``horizon`` days after it,
        reading no day after ``until`` (``relations.windows_select``); a share of the customers
        when ``buckets`` > 1."""
        if self.closed or not self.daily:
            return Reopened(self.source).windows(cutoffs, horizon, until, buckets)
        with _diagnosed_open(self.plan) as engine:
            sample = engine.bucket("customer_id", buckets, 0) if buckets > 1 else None
            sql = rel.with_ctes([rel.per_day_until(until)], rel.windows_select(cutoffs, horizon, sample))
            return window_frame(engine.table(sql))

    def personas(self, trained, snapshot: dt.date) -> dict:
        """Every segment's persona (``personas``): in this pass's engine when it is still open
        (the per-day table, and the orders for an Olist layout, are there), else in one statement
        on a fresh connection, the customers scored by the compiled model."""
        from . import personas as persona_mod
        from .compiled import scored_ctes

        if self.plan.persona is None:
            return {}
        scoring = [
            *scored_ctes(trained.model, trained.rule, trained.terms, trained.chance),
            ("members", "SELECT customer_id, cluster FROM scored"),
        ]
        if not self.closed:  # the per-day table (and the orders) of this pass
            plan, orders = self.plan, rel.MATERIALISED_ORDERS
            members = rel.with_ctes([rel.MATERIALISED[0], rel.customers(snapshot), *scoring], "SELECT * FROM members")
            with _diagnosed_open(plan) as engine:  # once: the facets read it several times
                engine.prepare_scoring()
                engine.materialise("segment_members", members)
            head, scoring = [], [("members", "SELECT customer_id, cluster FROM segment_members")]
        else:
            plan, orders = _plan(self.source), rel.VALID_DAYS
            head = [*plan.valid, rel.valid_days(snapshot), rel.PER_DAY, rel.customers(snapshot)]
        try:
            with _diagnosed_open(plan) as engine:
                assert plan.persona is not None
                facets = plan.persona(snapshot, orders)
                if not facets:
                    return {}
                engine.prepare_scoring()
                table = engine.table(rel.with_ctes([*head, *scoring, *facets], rel.FACETS_SELECT), plan.relation)
        finally:
            plan.engine.close()
        rows = table.to_pydict()
        sizes = {s.cluster: s.customers for s in trained.all_segments}
        return persona_mod.summarise(rows["facet"], rows["cluster"], rows["label"], rows["amount"], rows["n"], sizes)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._plan is not None:
                self._plan.engine.close()


@contextlib.contextmanager
def _diagnosed_open(plan: _Plan) -> Iterator[Engine]:
    """The plan's engine, left open; a failure is diagnosed (a missing file or column named)."""
    try:
        yield plan.engine
    except DataError:
        if plan.diagnose is not None:
            plan.diagnose()
        raise


def _fetch_direct(source: Source, plan: _Plan, as_of: dt.date | None) -> _Fetched:
    """The exclusions and the gaps on a second connection while this one reads R, F, M."""
    from concurrent.futures import ThreadPoolExecutor

    valid = [*plan.valid, rel.valid_days(_late(as_of)[0]), rel.PER_DAY]

    def counts() -> tuple[dict[str, int], FirstReturns]:
        other = _plan(source)
        with _diagnosed(other) as engine:
            engine.prepare_scoring(2)  # one core each: the two connections are the parallelism
            excluded = _excluded(engine, [*orders_ctes(other, as_of), rel.DIRECT_EXCLUDED], other.relation)
            return excluded, _gaps(engine, [*other.valid, rel.valid_days(_late(as_of)[0]), rel.PER_DAY], other.relation)

    with ThreadPoolExecutor(1) as pool:
        side = pool.submit(counts)
        with _diagnosed(plan) as engine:  # a failure here waits for the other connection to finish
            table = engine.table(rel.with_ctes(valid, rel.RFM_SELECT), plan.relation)
        excluded, gaps = side.result()
    return _Fetched(excluded, gaps, table)


def _late(as_of: dt.date | None) -> tuple[dt.date, str]:
    """The last day an order may have, and the reason for the later ones."""
    if as_of is None:  # a mistyped year must not become the snapshot date of every customer
        return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), "future_date"
    return as_of, "after_as_of"


def orders_ctes(plan: _Plan, as_of: dt.date | None) -> list[tuple[str, str]]:
    """The source's orders relation with every row classified (valid, or why not)."""
    return [*plan.ctes, rel.classified(*_late(as_of))]


@dataclass
class _Fetched:
    excluded: dict[str, int]
    gaps: FirstReturns
    table: pa.Table | None  # a row per customer; let go of once it is a frame


def _fetch(
    engine: Engine, days: list[tuple[str, str]], excluded_rows: list[tuple[str, str]], relation: str | None
) -> _Fetched:
    """What training needs from the engine: the exclusions, the gaps, and a row per customer."""
    excluded = _excluded(engine, excluded_rows, relation)
    gaps = _gaps(engine, days, relation)
    return _Fetched(excluded, gaps, engine.table(rel.with_ctes(days, rel.RFM_SELECT), relation))


def _excluded(engine: Engine, ctes: list[tuple[str, str]], relation: str | None) -> dict[str, int]:
    dropped = engine.table(rel.with_ctes(ctes, rel.EXCLUDED_SELECT), relation).to_pydict()
    return {
        str(k): int(n)
        for k, n in sorted(
            zip(dropped["excluded"], dropped["n_rows"]), key=lambda kv: _REASON_ORDER.get(str(kv[0]), 99)
        )
        if n and int(n)
    }


def _gaps(engine: Engine, ctes: list[tuple[str, str]], relation: str | None) -> FirstReturns:
    histogram = engine.table(rel.with_ctes(ctes, rel.FIRST_RETURNS_SELECT), relation).to_pydict()
    return FirstReturns.of(histogram["gap"], histogram["n"])


def _rfm_table(fetched: _Fetched, as_of: dt.date | None, where: str, description: str, currency: str) -> RFMTable:
    excluded, gaps, table = fetched.excluded, fetched.gaps, fetched.table
    fetched.table = None
    assert table is not None
    if not table.num_rows:
        if as_of is not None and excluded.get("after_as_of"):
            raise DataError(
                f"{where}: no orders on or before {as_of.isoformat()} (excluded: {describe_exclusions(excluded)})"
            )
        raise DataError(f"{where}: no usable orders left after filtering (excluded: {describe_exclusions(excluded)})")
    import pandas as pd
    import pyarrow as pa

    last_day = _numbers(table, "last_day", np.int64)
    latest = rel.EPOCH + dt.timedelta(days=int(last_day.max()))
    snapshot = as_of or (latest + dt.timedelta(days=1))
    recency = ((snapshot - rel.EPOCH).days - last_day).astype(np.int32)
    del last_day
    occasions = _numbers(table, "occasions", np.int32)
    frequency = _numbers(table, "frequency", np.int32)
    monetary = _numbers(table, "monetary", np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(occasions > 1, _numbers(table, "span", np.float64) / (occasions - 1), np.nan)
    ids = table.column("customer_id")
    del table  # the numbers are copied out: only the ids' buffers stay while they become a column
    rfm = pd.DataFrame(
        {
            "customer_id": customer_ids(ids),
            "recency": recency,
            "frequency": frequency,
            "monetary": monetary,
            "occasions": occasions,
            "gap": gap,
        },
        copy=False,
    )
    del ids
    pa.default_memory_pool().release_unused()  # the fetched table's memory back to the system
    return RFMTable(
        frame=rfm,
        snapshot_date=snapshot,
        latest_purchase=latest,
        orders=int(frequency.sum(dtype=np.int64)),
        excluded=excluded,
        source=description,
        gaps=gaps,
        currency=currency,
        as_of=as_of,
    )


def _numbers(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)


def customer_ids(ids) -> pd.Series:
    """Customer ids from the engine as text, kept in Arrow memory (9M ids as Python strings would
    take three times the space)."""
    import pandas as pd
    import pyarrow as pa

    if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.string())
    series = ids.to_pandas()
    if series.dtype == object:  # pandas before 3 turns Arrow text into Python strings
        series = pd.Series(pd.arrays.ArrowStringArray(ids))
    return series.rename("customer_id")


def connect():
    """An in-memory DuckDB in UTC (kept for callers that query files directly)."""
    from .engines import duckdb_connect

    return duckdb_connect()


@dataclass(frozen=True)
class EngineScore:
    """Every customer of a source scored inside its engine: only totals and the at-risk rows came back."""

    snapshot_date: dt.date
    latest_purchase: dt.date
    tally: pd.DataFrame  # cluster, at_risk, customers, revenue, expected (chance x typical spend)
    at_risk_rows: pd.DataFrame  # customer_id, recency, frequency, monetary, occasions, gap, cluster, chance


def score_in_engine(source: Source, as_of: dt.date | None, scoring: list[tuple[str, str]]) -> EngineScore:
    """Score every customer of ``source`` as of ``as_of`` with a compiled model (``compiled.scored_ctes``).

    One statement per session, from the valid orders to the totals (``relations.SCORED_TOTALS_SELECT``):
    the engine stores nothing. A database that runs one statement on one core (PostgreSQL's
    aggregation after its parallel scan, MySQL) is asked on several connections at once, each
    for its own share of the customers by a hash of their id (``SEGMENT_DB_SESSIONS``, default 2).
    """
    if as_of is None:
        plan = _plan(source)
        try:
            (latest,) = plan.engine.one(
                rel.with_ctes([*plan.valid, rel.valid_days(_late(None)[0])], rel.LATEST_SELECT), plan.relation
            )
        finally:
            plan.engine.close()
        if latest is None:
            raise DataError(f"{plan.engine.where}: no usable orders left after filtering")
        as_of = rel.EPOCH + dt.timedelta(days=int(latest) + 1)
    snapshot = as_of

    def share(bucket: int, buckets: int, plan: _Plan | None = None) -> pa.Table:
        plan = plan or _plan(source)
        try:
            engine = plan.engine
            engine.prepare_scoring(buckets)
            cond = engine.bucket("customer_id", buckets, bucket) if buckets > 1 else None
            ctes = [*plan.valid, rel.valid_days(snapshot, cond), rel.PER_DAY, rel.customers(snapshot), *scoring]
            try:
                return engine.table(rel.with_ctes(ctes, rel.SCORED_TOTALS_SELECT), plan.relation)
            except DataError:
                if plan.diagnose is not None:
                    plan.diagnose()
                raise
        finally:
            plan.engine.close()

    first = _plan(source)
    buckets = first.engine.sessions()
    if buckets == 1:
        parts = [share(0, 1, first)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(buckets - 1) as pool:
            others = [pool.submit(share, b, buckets) for b in range(1, buckets)]
            mine = _settle(lambda: share(0, buckets, first))
            results = [mine, *(_settle(f.result) for f in others)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        parts = [r for r in results if not isinstance(r, BaseException)]
    return _engine_score(parts, snapshot, source)


def _settle(fn: Callable[[], pa.Table]) -> pa.Table | BaseException:
    try:
        return fn()
    except Exception as exc:
        return exc


def _engine_score(parts: list[pa.Table], snapshot: dt.date, source: Source) -> EngineScore:
    import pandas as pd
    import pyarrow as pa

    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    if not table.num_rows:
        raise DataError(f"{source.describe()}: no orders on or before {snapshot.isoformat()}")
    frame = table.to_pandas()
    frame = frame.astype(
        {
            "cluster": np.int64,
            "at_risk": np.int64,
            "customers": np.int64,
            "revenue": np.float64,
            "expected": np.float64,
            "last_day": np.int64,
        }
    )
    latest_day = rel.EPOCH + dt.timedelta(days=int(frame["last_day"].max()))
    tally = frame.groupby(["cluster", "at_risk"], as_index=False)[["customers", "revenue", "expected"]].sum()
    rows = frame[frame["at_risk"] == 1]
    rows = pd.DataFrame(
        {
            "customer_id": rows["risky_id"].astype(str).to_numpy(),
            "recency": rows["recency"].astype(np.int64).to_numpy(),
            "frequency": rows["frequency"].astype(np.int64).to_numpy(),
            "monetary": rows["revenue"].to_numpy(),  # a group of one: that customer's spend
            "occasions": rows["occasions"].astype(np.int64).to_numpy(),
            "gap": pd.to_numeric(rows["gap"]).astype(np.float64).to_numpy(),
            "cluster": rows["cluster"].to_numpy(),
            "chance": pd.to_numeric(rows["chance"]).astype(np.float64).to_numpy(),
        }
    )
    rows = rows.sort_values("customer_id", kind="stable", ignore_index=True)
    return EngineScore(snapshot, latest_day, tally, rows)


def window_frame(table: pa.Table) -> pd.DataFrame:
    """The rows of ``relations.windows_select`` as a frame: the cut-off as a date, each
    customer's usual gap as of it (NaN with one purchase day) and whether they came back."""
    import pandas as pd

    cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "customer_id"}
    frame = pd.DataFrame(
        {
            "customer_id": customer_ids(table.column("customer_id")),
            "cutoff": pd.to_datetime(np.asarray(cols["cutoff"], dtype=np.int64), unit="D").date,
            **{
                name: np.asarray(cols[name], dtype=np.float64 if name in ("monetary", "later_spend") else np.int64)
                for name in ("recency", "tenure", "occasions", "frequency", "monetary", "later_days", "later_spend")
            },
        }
    )
    occasions = frame["occasions"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["gap"] = np.where(
            occasions > 1, (frame["tenure"] - frame["recency"]).to_numpy(np.float64) / (occasions - 1), np.nan
        )
    frame["returned"] = frame["later_days"].to_numpy() > 0
    return frame
