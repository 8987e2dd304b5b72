"""How a source is read: which engine, which relations, which files and columns (the read plan)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.data import olist_sql
from segmentation.data import relations as rel
from segmentation.data.database_engine import DatabaseEngine
from segmentation.data.duckdb_engine import DuckDBEngine
from segmentation.data.engines import Engine
from segmentation.data.file_loads import csv_header, load_files, reader
from segmentation.data.kinds import OLIST_COLUMNS, OLIST_FILES, DatabaseSource, OlistSource, Source, TransactionsSource
from segmentation.data.spark_engine import SparkEngine
from segmentation.data.sqltext import PLACEHOLDER, ident
from segmentation.errors import DataError

if TYPE_CHECKING:
    pass


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
    carried: frozenset[str] = frozenset()  # persona labels the orders relation carries (``olist_sql.CARRIED``)
    # the orders relation joins and deduplicates several tables, and the database user may create
    # temporary tables: a training pass keeps it rather than have every statement compute it
    joined: bool = False
    # a DuckDB file: (its relation, its customer id as the queries read it, the columns they
    # read), and the same plan over another relation with those columns (a part: ``parts.split``)
    split_key: tuple[str, str, tuple[str, ...]] | None = None
    rebase: Callable[[str], _Plan] | None = None


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
        refs = {key: reader(path) for key, path in files.items()}
        extras = _olist_extras(source.folder) if keep_files else {}
        refs.update({key: reader(path) for key, path in extras.items()})
        loaded = load_files(engine, {**files, **extras})
        refs.update(loaded)
        # ids counted unique need no GROUP BY to be counted once (10M orders within 1 GB: the
        # orders read in 16-17 s with the count instead of 20-22). A gzipped file read from disk
        # (not loaded into memory as a small folder's are) is not counted: that is one more
        # decompression of it (10M orders and customers: 8.9 s instead of 2.8), as much as it
        # saves. Orders whose ids repeat have their payments summed in their own GROUP BY
        # (``OlistTables.merged``), unless read from gzipped files: DuckDB's two gzip readers
        # under that one GROUP BY ran out of 1 GB after 2 s at 3M and at 10M orders, where
        # grouped apart and joined they read within 600 MB (3M: 7-8 s; 10M: 31-32 s)
        gzipped = {key for key, path in files.items() if path.suffix == ".gz" and key not in loaded}
        keyed = frozenset(
            key
            for key, column in olist_sql.KEYABLE
            if key not in gzipped and engine.ids_counted_unique(refs[key], column)
        )
        olist = olist_sql.OlistTables(
            refs["orders"],
            refs["payments"],
            refs["customers"],
            rel.Reading("TRY_CAST"),
            merged="orders" not in keyed and not (gzipped & {"orders", "payments"}),
            keyed=keyed,
        )
        # a training pass that describes personas carries the labels it can on each order (the
        # files' header lines say which facets there are: read once, here or for the personas)
        have = _olist_folder_have(source.folder) if keep_files else None
        carried = have & olist_sql.CARRIED if have is not None else frozenset()

        def persona(late: dt.date, orders: str) -> list[tuple[str, str]]:
            on_orders = carried if orders == rel.MATERIALISED_ORDERS else frozenset()
            facets = have if have is not None else _olist_folder_have(source.folder)
            return _olist_folder_persona(source.folder, refs, orders, facets, on_orders)

        # the columns are not checked up front (sniffing three gzipped files costs a third of a
        # second on Olist): a query that fails is diagnosed
        return _Plan(
            engine,
            olist_sql.olist_orders(olist, carried),
            olist_sql.olist_valid_orders(olist),
            diagnose=lambda: _check_olist_columns(engine, refs, files),
            persona=persona,
            persona_orders=True,
            carried=carried,
        )
    if isinstance(source, TransactionsSource):
        engine = DuckDBEngine(str(source.path))
        opened.append(engine)
        ref = reader(source.path)
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
        reading = rel.Reading("TRY_CAST", source.date_format, source.decimal_comma, source.net_returns)
        return replace(
            _transactions_plan(engine, ref, cols, reading),
            split_key=(
                ref,
                rel.text_id(ident(cols.customer)),
                tuple(ident(c) for c in dict.fromkeys(astuple(cols)) if c),
            ),
            rebase=lambda part: _transactions_plan(engine, part, cols, reading),
        )
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
            # ids that never repeat need no GROUP BY to be counted once (PostgreSQL: a primary
            # key; MySQL's join key is the id's first 255 characters, where two long ids may meet)
            keyed = frozenset(
                key
                for key, column in olist_sql.KEYABLE
                if engine.ids_never_repeat(OLIST_FILES[key], source.schema, column)
            )
            olist = olist_sql.OlistTables(
                refs["orders"], refs["payments"], refs["customers"], rel.Reading(), keyed=keyed
            )
            # a training pass keeps the join (PostgreSQL only: MySQL cannot read a temporary table
            # twice in one statement) and carries on each order what the personas can use
            keeps = keep_files and engine.dialect == "postgres" and engine.may_keep()
            have = _olist_tables_have(engine, source.schema, refs) if keeps else None
            carried = have & olist_sql.CARRIED if have is not None else frozenset()

            def persona(late: dt.date, orders: str) -> list[tuple[str, str]]:
                on_orders = carried if orders == rel.MATERIALISED_ORDERS else frozenset()
                facets = have if have is not None else _olist_tables_have(engine, source.schema, refs)
                all_refs = _olist_table_refs(source.schema, refs)
                return olist_sql.olist_persona(all_refs, rel.Reading(), facets, orders, on_orders)

            return _Plan(
                engine,
                olist_sql.olist_orders(olist, carried),
                olist_sql.olist_valid_orders(olist),
                persona=persona,
                persona_orders=True,
                carried=carried,
                joined=keeps,
            )
        assert source.columns is not None
        if source.query is not None:
            available = engine.columns(f"(\n{source.query}\n)")
            ref, relation = PLACEHOLDER, source.query
        else:
            assert source.table is not None
            ref = (ident(source.schema) + "." if source.schema else "") + ident(source.table)
            available = engine.columns(_compiled_ref(ref, engine.dialect))
            relation = None
        cols = _resolve_columns(available, source.columns, where)
        order_key = bool(cols.order and source.table and engine.is_key(source.table, source.schema, cols.order))
        reading = rel.Reading(net_returns=source.net_returns)
        return _transactions_plan(engine, ref, cols, reading, order_key, relation)
    spark = SparkEngine(source.describe())
    opened.append(spark)
    spark.register("segment_source", source.target, source.query)
    cols = _resolve_columns(spark.columns("segment_source"), source.columns, source.describe())
    return _transactions_plan(spark, "segment_source", cols, rel.Reading(net_returns=source.net_returns))


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
    for key, stem in olist_sql.OLIST_PERSONA_TABLES.items():
        for suffix in (".csv", ".csv.gz"):
            if (folder / f"{stem}{suffix}").exists():
                paths[key] = folder / f"{stem}{suffix}"
                break
    return paths


def _olist_folder_paths(folder: Path) -> dict[str, Path]:
    return {**_olist_extras(folder), **{key: _olist_file(folder, key) for key in OLIST_FILES}}


def _olist_folder_have(folder: Path) -> frozenset[str]:
    """The facets an Olist folder's files can describe (from their header lines)."""
    paths = _olist_folder_paths(folder)
    return _olist_have(lambda key: csv_header(paths[key]) if key in paths else None)


def _olist_folder_persona(
    folder: Path, refs: Mapping[str, str], orders: str, have: frozenset[str], carried: frozenset[str]
) -> list[tuple[str, str]]:
    all_refs = {**{key: reader(path) for key, path in _olist_folder_paths(folder).items()}, **refs}
    return olist_sql.olist_persona(all_refs, rel.Reading("TRY_CAST"), have, orders, carried)


def _olist_table_refs(schema: str | None, refs: Mapping[str, str]) -> dict[str, str]:
    prefix = ident(schema) + "." if schema else ""
    return {**refs, **{key: prefix + ident(name) for key, name in olist_sql.OLIST_PERSONA_TABLES.items()}}


def _olist_tables_have(engine: DatabaseEngine, schema: str | None, refs: Mapping[str, str]) -> frozenset[str]:
    """The facets a database's Olist tables can describe (from their columns)."""
    all_refs = _olist_table_refs(schema, refs)

    def columns_of(key: str) -> list[str] | None:
        try:
            return engine.columns(_compiled_ref(all_refs[key], engine.dialect))
        except DataError:
            return None

    return _olist_have(columns_of)


def _compiled_ref(ref: str, dialect: str) -> str:
    """A table reference written for DuckDB, as the engine spells it (quoting differs)."""
    from segmentation.data.dialects import compile_sql  # lazy: SQLGlot, imported when a source is read

    compiled = compile_sql(f"SELECT * FROM {ref}", dialect)
    return compiled[len("SELECT * FROM ") :]


@contextlib.contextmanager
def _diagnosed_open(plan: _Plan) -> Iterator[Engine]:
    """The plan's engine, left open; a failure is diagnosed (a missing file or column named)."""
    try:
        yield plan.engine
    except DataError:
        if plan.diagnose is not None:
            plan.diagnose()
        raise


@contextlib.contextmanager
def _diagnosed(plan: _Plan) -> Iterator[Engine]:
    """The plan's engine, diagnosed as ``_diagnosed_open``, and always closed."""
    try:
        with _diagnosed_open(plan) as engine:
            yield engine
    finally:
        plan.engine.close()
