"""Text for Slack's mrkdwn that came from data or from a person: shown as typed, never read as markup.

Slack reads ``<…>`` as links, mentions (``<@U1>``, ``<!everyone>``) and channel references, and
``&`` as the start of an entity; everything else is literal. Every value that came from the shop's
data (customer ids, categories, where the data lives) or from someone's input (a command's
arguments echoed in an error) goes through ``as_text`` before it is placed in a message, and
error lines are escaped whole (``blocks.error_line``).

Where the data lives is named without its address: a database URL (host, port, database, user)
is told apart only by its kind (``without_addresses``), in every message the bot posts.
"""

from __future__ import annotations

import re

# scheme://anything-up-to-a-space: the masked URL of a database source (``urls.mask``)
_DATABASE_URL = re.compile(r"\b([a-z][a-z0-9]*)(?:\+[a-z0-9]+)?://[^\s)]+", re.IGNORECASE)
_KINDS = {
    "postgresql": "PostgreSQL",
    "postgres": "PostgreSQL",
    "mysql": "MySQL",
    "mariadb": "MariaDB",
    "sqlite": "SQLite",
    "mssql": "SQL Server",
    "oracle": "Oracle",
    "snowflake": "Snowflake",
    "bigquery": "BigQuery",
}


def as_text(value: object) -> str:
    """``value`` as literal text in mrkdwn: no link, no mention, no entity."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def without_addresses(text: str) -> str:
    """Database URLs replaced by their kind ("a PostgreSQL database"); ``http(s)`` links are kept."""

    def name(m: re.Match[str]) -> str:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return m.group()
        return f"a {_KINDS.get(scheme, scheme)} database"

    return _DATABASE_URL.sub(name, text)
