"""Files as DuckDB reads them: a file's reader, a CSV file's header line, small Olist files read into memory once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from segmentation.data.duckdb_engine import DuckDBEngine
from segmentation.data.kinds import OLIST_COLUMNS
from segmentation.data.sqltext import ident, sql_str


def reader(p: Path) -> str:
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return f"read_parquet({sql_str(str(p))})"
    return f"read_csv({sql_str(str(p))}, all_varchar=true, header=true)"


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


def load_files(engine: DuckDBEngine, paths: Mapping[str, Path]) -> dict[str, str]:
    """Read the columns the product uses of small Olist files into memory tables, concurrently;
    returns their names by key (nothing when the files are large, or a header lacks a column
    the layout needs: the queries then read the files and say what is wrong)."""
    if sum(p.stat().st_size for p in paths.values()) > LOAD_LIMIT:
        return {}
    selects = {}
    for key, path in paths.items():
        header = csv_header(path) or []
        folded = {c.lower(): c for c in header}
        if any(col.lower() not in folded for col in OLIST_COLUMNS.get(key, ())):
            return {}
        cols = [folded[c.lower()] for c in _OLIST_WANTED[key] if c.lower() in folded]
        selects[key] = f"SELECT {', '.join(ident(c) for c in cols)} FROM {reader(path)}"
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


def csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV file (plain or gzipped) from its first line, without reading on."""
    import csv
    import gzip

    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader([fh.readline()]), None)
    except (OSError, UnicodeDecodeError, EOFError):
        return None
