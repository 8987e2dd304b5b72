"""Database URLs: which driver and SQL dialect a scheme means, and the URL with its secrets masked for every message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from segmentation.errors import DataError

if TYPE_CHECKING:
    pass


# URL scheme → (SQLAlchemy driver URL scheme, SQLGlot dialect, what to install)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "postgresql": ("postgresql+psycopg", "postgres", "psycopg[binary]"),
    "postgres": ("postgresql+psycopg", "postgres", "psycopg[binary]"),
    "mysql": ("mysql+pymysql", "mysql", "pymysql"),
    "mariadb": ("mysql+pymysql", "mysql", "pymysql"),
}
# Warehouses reached through their own SQLAlchemy dialect (installed by the user); not tested here.
WAREHOUSES = {
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "redshift": "redshift",
    "trino": "trino",
    "databricks": "databricks",
    "mssql": "tsql",
}


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(spec: str) -> bool:
    return bool(_URL.match(spec))


SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|credential)", re.IGNORECASE)


def mask(url: str) -> str:
    """The URL with its password (and any secret-looking query parameter) replaced by ***, for
    every message and the model's metadata. The user part runs to the *last* @ before the path,
    so a password with a raw @ is masked whole."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+._-]*:/*)(.*)$", url.strip(), re.DOTALL)
    if not m:
        return url
    scheme, rest = m.groups()
    start = rest.rfind("@") + 1 if "@" in rest else 0
    ends = [i for i in (rest.find(sep, start) for sep in "/?#") if i >= 0]
    cut = min(ends) if ends else len(rest)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    if "?" in tail:
        path, query = tail.split("?", 1)
        parts = []
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            parts.append(f"{key}=***" if eq and SECRET_KEYS.search(key) else part)
        tail = f"{path}?{'&'.join(parts)}"
    return scheme + authority + tail


def mask_text(text: str) -> str:
    """Anything in free text that looks like a URL with credentials, masked."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+._-]*:/+\S*", lambda m: mask(m.group(0)), text)


def resolve_url(url: str) -> tuple[str, str]:
    """(SQLAlchemy URL, SQLGlot dialect) for a database URL, or a DataError naming the scheme."""
    scheme, rest = url.split("://", 1)
    base = scheme.split("+", 1)[0].lower()
    if base in SCHEMES:
        driver, dialect, _ = SCHEMES[base]
        return (url if "+" in scheme else f"{driver}://{rest}"), dialect
    if base in WAREHOUSES:
        return url, WAREHOUSES[base]
    known = ", ".join(sorted({*SCHEMES, *WAREHOUSES}))
    raise DataError(f"{mask(url)}: unknown database type '{scheme}' (use one of: {known})")
