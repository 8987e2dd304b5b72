"""Quoting for SQL text the product writes: string literals, identifiers, and the placeholder that
stands for a user's own query until the SQL is compiled to its engine's dialect."""

from __future__ import annotations

PLACEHOLDER = "segment_source_relation_q7f3"


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
