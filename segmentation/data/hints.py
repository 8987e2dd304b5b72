"""What to suggest when a file's values cannot be read as given: the date format that parses
them, or that the file holds no rows at all. Read from a small sample of the file, only after
training found nothing usable (never on the way of a good read)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from segmentation.data.kinds import Source, TransactionsSource

# day-first before month-first: most of the world writes dates day first
DATE_FORMATS = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%Y/%m/%d",
    "%d/%m/%y",
    "%m/%d/%y",
    "%Y%m%d",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d-%b-%Y",
    "%d %b %Y",
)
SAMPLE_ROWS = 500
_DECIMAL_COMMA = re.compile(r"^\s*[^\d,.-]{0,4}\s*-?\d{1,3}(?:\.?\d{3})*,\d{1,4}\s*$")  # 10,50 · R$ 1.234,56


def hint(source: Source, excluded: Mapping[str, int]) -> str:
    """A clause to add to "no usable orders" ("; the file has no rows", "; the dates look like
    '25/12/2024': try --date-format %d/%m/%Y"), or ""."""
    if not isinstance(source, TransactionsSource):
        return ""
    if not any(excluded.values()):
        return "; the file has no rows below its header" if source.path.suffix.lower() != ".parquet" else ""
    if excluded.get("bad_amount") and source.amount_col and not source.decimal_comma:
        amounts = _sample(source, source.amount_col)
        if amounts and all(_DECIMAL_COMMA.match(v) for v in amounts[:50]):
            return f"; the amounts look like '{amounts[0][:20]}', with a decimal comma: add --decimal ,"
    if not excluded.get("bad_date") or source.date_format:
        return ""
    values = _sample(source, source.date_col)
    if not values:
        return ""
    fits = [f for f in DATE_FORMATS if all(_parses(v, f) for v in values)]
    if not fits:
        return f"; the dates look like '{values[0][:30]}', and no common format reads them all: give --date-format"
    more = f" (or {fits[1]}: these values do not tell day from month)" if len(fits) > 1 and _twins(fits) else ""
    return f"; the dates look like '{values[0][:30]}': try --date-format {fits[0]}{more}"


def _twins(fits: list[str]) -> bool:
    return fits[1] == fits[0].replace("%d", "%D").replace("%m", "%d").replace("%D", "%m")


def _parses(value: str, fmt: str) -> bool:
    try:
        dt.datetime.strptime(value.strip(), fmt)
    except ValueError:
        return False
    return True


def _sample(source: TransactionsSource, column: str) -> list[str]:
    import duckdb

    col = '"' + column.replace('"', '""') + '"'
    path = str(source.path).replace("'", "''")
    reader = (
        f"read_parquet('{path}')"
        if source.path.suffix.lower() in (".parquet", ".pq")
        else f"read_csv('{path}', all_varchar=true)"
    )
    try:
        rows = (
            duckdb.connect()
            .execute(f"SELECT CAST({col} AS VARCHAR) FROM {reader} WHERE {col} IS NOT NULL LIMIT {SAMPLE_ROWS}")
            .fetchall()
        )
    except duckdb.Error:
        return []
    return [str(r[0]) for r in rows if str(r[0]).strip()]
