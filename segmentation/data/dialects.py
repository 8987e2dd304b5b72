"""One SQL definition, every engine: the product's SQL is written once in DuckDB's dialect and
compiled to the engine's own with SQLGlot.

A few things SQL engines disagree on are settled here rather than in the queries:

- ``BINARY_TEXT(x)`` marks a text id that must group and sort byte by byte. MySQL and MariaDB
  compare text case-insensitively by default (``'ABC' = 'abc'`` would merge two customers) and
  PostgreSQL sorts by the database's locale; both get an explicit binary collation. DuckDB and
  Spark already compare bytes. On MySQL the id is also a ``CHAR(255)``, as ``KEY_TEXT`` below.
- ``KEY_TEXT(x)`` is an id the Olist layout joins on, as text. MariaDB hashes a join on a text
  of unbounded length only by a short prefix (6,000 orders took 5 s instead of 0.4): there it is
  ``CHAR(255)``, long enough for any id (an e-mail address is at most 254 characters).
- ``OFFSET 0`` on a subquery is a *fence*: PostgreSQL then computes the subquery's columns once
  instead of inlining their expressions into every reference. Every other engine gets the
  subquery without it (MySQL has no OFFSET without LIMIT, and elsewhere it would only get in
  the optimiser's way).
- Constructs SQLGlot cannot express in the target raise (``unsupported_level=RAISE``) instead of
  being silently approximated.

The queries themselves avoid what transpiles to different *results*: ``DATE_DIFF('day', a, b)``
rather than ``b - a`` (MariaDB's date minus date is a number like 20180102 - 20171231),
``CAST(1 AS DOUBLE) / n`` rather than ``1.0 / n`` (MariaDB divides decimals to 4 places) and
``LN(1 + x)`` rather than ``LOG`` (base 10 in some engines). ``tests/test_dialects.py`` checks
that the queries keep to this.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from segmentation.data.sqltext import PLACEHOLDER
from segmentation.errors import DataError

SOURCE_DIALECT = "duckdb"

# How each engine spells a text value compared byte by byte; `x` is the value.
_BINARY_TEXT = {
    "mysql": "CAST(x AS CHAR(255) CHARACTER SET utf8mb4) COLLATE utf8mb4_bin",
    "postgres": 'x COLLATE "C"',
}


_KEY_TEXT = {"mysql": "CAST(x AS CHAR(255))"}


def _rewrite(dialect: str):
    template = _BINARY_TEXT.get(dialect)
    key_template = _KEY_TEXT.get(dialect, "CAST(x AS VARCHAR)")

    def visit(node):
        if isinstance(node, exp.Anonymous) and str(node.this).upper() == "KEY_TEXT":
            (inner,) = node.expressions
            out = sqlglot.parse_one(key_template, read="mysql" if dialect == "mysql" else SOURCE_DIALECT)
            out.find(exp.Column).replace(inner)  # type: ignore[union-attr]
            return out
        if isinstance(node, exp.Select) and dialect != "postgres" and _is_fence(node.args.get("offset")):
            node.set("offset", None)
            return node
        if isinstance(node, exp.Anonymous) and str(node.this).upper() == "BINARY_TEXT":
            (inner,) = node.expressions
            if template is None:
                return inner
            out = sqlglot.parse_one(template, read=dialect)
            out.find(exp.Column).replace(inner)  # type: ignore[union-attr]
            return out
        return node

    return visit


def _is_fence(offset) -> bool:
    return isinstance(offset, exp.Offset) and offset.expression.sql() == "0"


@functools.lru_cache(maxsize=256)
def compile_sql(sql: str, dialect: str) -> str:
    """``sql`` (DuckDB dialect) in ``dialect``; raises if the target cannot say it."""
    try:
        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
        return tree.transform(_rewrite(dialect)).sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise DataError(f"the {dialect} engine cannot run this query: {str(exc).splitlines()[0]}") from None


def with_relation(compiled: str, relation: str | None) -> str:
    """Put a user's own query (already in the engine's dialect) where the placeholder stands."""
    if relation is None:
        return compiled
    return compiled.replace(PLACEHOLDER, f"(\n{relation}\n)")  # newlines: a trailing -- comment ends there
