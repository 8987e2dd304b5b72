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


_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,20}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{1,20}$")


def user(user_id: object) -> str:
    """A mention of a Slack user id (``<@U…>``); anything else (a login name from the CLI, a
    forged id) as text."""
    text = str(user_id)
    return f"<@{text}>" if _USER_ID.match(text) else as_text(text)


def channel(channel_id: object) -> str:
    """A link to a Slack channel id (``<#C…>``); anything else as text."""
    text = str(channel_id)
    return f"<#{text}>" if _CHANNEL_ID.match(text) else as_text(text)


# What database drivers put in their first line about a connection (PostgreSQL, MySQL/MariaDB).
_DRIVER_DETAILS = (
    (
        re.compile(r'connection to server (?:at|on) "[^"]*"(?:\s*\([^)]*\))?(?:,\s*port \d+)?'),
        "connection to the server",
    ),
    (re.compile(r"\bport \d+"), "its port"),
    (re.compile(r"'[^'\s]*'@'[^'\s]*'"), "its user"),
    (re.compile(r'\b(role|database|user) "[^"]*"'), r"that \1"),
    (re.compile(r"\b(?:to |resolve )?host '[^']*'"), "its host"),
    (re.compile(r"\bhost \S+"), "its host"),
)
_IP_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


# Words without which none of ``_DRIVER_DETAILS`` can match.
_DRIVER_WORDS = ("server", "port", "'@'", "role", "database", "user", "host")


def as_text(value: object) -> str:
    """``value`` as literal text in mrkdwn: no link, no mention, no entity."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def without_addresses(text: str) -> str:
    """Database URLs replaced by their kind ("a PostgreSQL database"), and the host, port, user
    and database a driver names in its errors left out; ``http(s)`` links are kept."""

    def name(m: re.Match[str]) -> str:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            return m.group()
        return f"a {_KINDS.get(scheme, scheme)} database"

    if "://" in text:
        text = _DATABASE_URL.sub(name, text)
    if any(word in text for word in _DRIVER_WORDS):  # most messages name no server: no regex runs
        for pattern, said in _DRIVER_DETAILS:
            text = pattern.sub(said, text)
    return _IP_ADDRESS.sub("an address", text)
