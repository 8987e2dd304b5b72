"""A --data argument and its flags turned into a source, checked as far as can be without reading.

``SourceOptions`` holds the flags that say how to read a source (columns, table, query, layout,
date format, currency); ``OPTIONS`` lists each flag once, with its help, for the command line
(``add_options``) and for a one-line spec such as ``SEGMENT_DATA`` (``parse_data_spec``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.data import relations as rel
from segmentation.data.kinds import DatabaseSource, OlistSource, Source, SparkSource, TransactionsSource
from segmentation.data.urls import is_url, mask, mask_text
from segmentation.errors import DataError, InputError

SUPPORTED_FILES = (".csv", ".csv.gz", ".parquet", ".pq")  # a transactions file DuckDB reads

if TYPE_CHECKING:
    pass


RETURNS = ("net", "already-netted")


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
    decimal: str | None = None,
    returns: str | None = None,
) -> Source:
    """Turn a ``--data`` argument and its flags into a source, checking what can be checked
    without reading. ``currency`` is the symbol amounts are shown with (default: R$ for Olist,
    none otherwise). ``returns``: ``net`` (the default: an order with a negative total is a
    return, netted against its customer's spend) or ``already-netted`` (the amounts are net
    already: such orders are left out)."""
    if currency is not None and (len(currency) > 5 or any(ch.isdigit() or ch.isspace() for ch in currency)):
        raise DataError(f"--currency is a short symbol such as $, € or R$; got '{currency}'")
    if layout not in (None, "olist", "transactions"):
        raise DataError(f"--layout is olist or transactions; got '{layout}'")
    if decimal not in (None, ".", ","):
        raise InputError(f"--decimal is . or , (the decimal mark of the amounts); got '{str(decimal)[:10]}'")
    if returns not in (None, *RETURNS):
        raise InputError(f"--returns is {' or '.join(RETURNS)}; got '{str(returns)[:20]}'")
    net = returns != "already-netted"
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
    if decimal == "," and (spec.startswith("spark:") or is_url(spec)):
        raise InputError("--decimal is for files; a database or Spark column holds numbers already")
    if spec.startswith("spark:"):
        return dataclasses.replace(
            _spark_source(spec, flags, date_format, query, table, schema, layout, currency), net_returns=net
        )
    if is_url(spec):
        found = _database_source(spec, flags, date_format, query, table, schema, layout, currency)
        if found.layout == "olist":
            if returns is not None:
                raise InputError(f"{mask(spec)}: --returns is for order lines; the Olist tables have no returns")
            return found
        return dataclasses.replace(found, net_returns=net)
    used = [f for f, v in (("--table", table), ("--query", query), ("--schema", schema), ("--layout", layout)) if v]
    if used:
        raise DataError(
            f"{' and '.join(used)} apply to a database or Spark source (--data postgresql://…), not to files"
        )
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(f"{mask_text(str(p))}: no such file or folder")
    if p.is_dir():
        if decimal == ",":
            raise InputError(f"{p}: --decimal is for a transactions file; the Olist files use a decimal point")
        if returns is not None:
            raise InputError(f"{p}: --returns is for a transactions file; the Olist files have no returns")
        if any(flags.values()):
            raise DataError(f"{p}: column flags apply to a single transactions file, not to an Olist folder")
        return OlistSource(p) if currency is None else OlistSource(p, currency)
    if not p.name.lower().endswith(SUPPORTED_FILES):
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
        decimal == ",",
        net,
    )


def _columns_from_flags(where: str, flags: dict[str, str | None]) -> rel.Columns:
    customer, date = flags["customer_col"], flags["date_col"]
    missing = [flag for flag, v in (("--customer-col", customer), ("--date-col", date)) if not v]
    if missing or customer is None or date is None:  # a usage error: exit status 2, as the README says
        raise InputError(
            f"{where}: say which columns to use: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
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


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source, beside where it is: the flags of ``--data``."""

    table: str | None = None
    query: str | None = None
    schema: str | None = None
    layout: str | None = None
    customer_col: str | None = None
    order_col: str | None = None
    date_col: str | None = None
    amount_col: str | None = None
    quantity_col: str | None = None
    price_col: str | None = None
    category_col: str | None = None
    date_format: str | None = None
    currency: str | None = None
    decimal: str | None = None
    returns: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SourceOptions:
        return cls(**{f.name: getattr(args, f.name, None) for f in fields(cls)})

    def flags(self) -> list[str]:
        """The command-line flags that give these options (what is set only)."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out += ["--" + f.name.replace("_", "-"), str(value)]
        return out


@dataclass(frozen=True)
class Option:
    field: str
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


OPTIONS = (
    Option("table", "database or Spark source: the table of orders or order lines"),
    Option("query", "database or Spark source: a query giving orders or order lines (in its SQL)"),
    Option("schema", "database source: the schema (or MySQL database) of --table or the Olist tables"),
    Option("layout", "database source: olist reads the three Olist tables", ("olist", "transactions")),
    Option("customer_col", "transactions file: customer id column"),
    Option("order_col", "transactions file: order id column (default: each row is an order)"),
    Option("date_col", "transactions file: order date column"),
    Option("amount_col", "transactions file: amount column"),
    Option("quantity_col", "transactions file: quantity column (with --price-col)"),
    Option("price_col", "transactions file: unit price column (with --quantity-col)"),
    Option("category_col", "transactions source: product category of each line, for the segments' personas"),
    Option("date_format", "strptime format of the date column, e.g. %%d/%%m/%%Y (default: ISO)"),
    Option("currency", "symbol shown before amounts, e.g. $ or € (default: R$ for the Olist layout, none otherwise)"),
    Option("decimal", "transactions file: the amounts' decimal mark, , for 10,50 or 1.234,56 (default: .)", (".", ",")),
    Option(
        "returns",
        "transactions source: net (default) subtracts an order with a negative total (a return, a cancellation) "
        "from its customer's spend; already-netted leaves such orders out, for exports whose amounts are net",
        ("net", "already-netted"),
    ),
)
assert [o.field for o in OPTIONS] == [f.name for f in fields(SourceOptions)]


def add_options(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--data`` on a command-line parser."""
    for o in OPTIONS:
        parser.add_argument(o.flag, dest=o.field, help=o.help, choices=o.choices)


class _SpecParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def parse_data_spec(spec: str | None, name: str = "SEGMENT_DATA") -> tuple[str | None, SourceOptions]:
    """A one-line spec, e.g. ``sales.csv --customer-col email --date-col created_at
    --amount-col total``: where the data is (None: the built-in sample) and how to read it."""
    p = _SpecParser(prog=name, add_help=False)
    p.add_argument("data", nargs="?")
    add_options(p)
    try:
        args = p.parse_args(shlex.split(spec or ""))
    except ValueError as exc:  # shlex: an unclosed quote
        raise InputError(f"{name}: {exc}") from None
    return args.data, SourceOptions.from_namespace(args)


BUILT_IN_SAMPLE = "the built-in sample (100,000 generated orders)"


@dataclass(frozen=True)
class OpenedData:
    """A source opened from ``--data`` and its flags, with what a model records about it."""

    source: Source
    reference: str  # where the data is, secrets masked: the model's "data"
    spec: str | None  # one line that opens it again ("": the built-in sample; None: it needs a secret)


def open_data(
    data: str | None, options: SourceOptions, samples: Path, announce: Callable[[str], None] | None = None
) -> OpenedData:
    """The source at ``data`` read as ``options`` say, or the built-in sample (made under
    ``samples`` on first use, and always called the built-in sample) when ``data`` is None."""
    if data is None:
        if announce is not None and not any(samples.glob("*/.complete")):
            announce("Generating the built-in sample data (100,000 orders, first use only)…")
        from segmentation.data.sample import ensure_default_sample  # lazy: the generator, only when asked

        folder = ensure_default_sample(samples)
        return OpenedData(OlistSource(folder, label=BUILT_IN_SAMPLE), BUILT_IN_SAMPLE, "")
    local = not is_url(data) and os.path.exists(os.path.expanduser(data))
    where = os.path.abspath(os.path.expanduser(data)) if local else data  # the same data wherever a bot runs
    source = source_from_spec(where, **asdict(options))
    shown = mask(str(where))
    spec = shlex.join([where, *options.flags()]) if shown == where else None
    return OpenedData(source, shown, spec)


def source_from_data_spec(spec: str | None, samples: Path, name: str = "SEGMENT_DATA") -> OpenedData:
    """A source from a one-line spec, as ``--data`` and its flags would give it (the built-in
    sample when empty)."""
    data, options = parse_data_spec(spec, name)
    return open_data(data, options, samples)
