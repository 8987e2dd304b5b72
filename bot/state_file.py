"""The SQLite file of the state database: refused when empty or damaged, created private and
whole, opened with write-ahead logging."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from segmentation.errors import SegmentationError


class StateError(SegmentationError):
    """The state database cannot be used (``DATABASE_URL``)."""


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead logging: readers never wait for the writer, and a commit appends to the log
    instead of rewriting pages and syncing twice (``synchronous=NORMAL`` is durable in WAL mode
    against a crash of the process; a power cut may lose the last commits, never corrupt)."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def check_sqlite_file(path: Path) -> None:
    """Refuse, in one line, a state database file that exists but is empty or damaged: starting
    on it would answer every request with 503, or silently start afresh without the
    subscriptions, the audit log and the digest history it held."""
    import sqlite3

    if not path.exists():
        return
    where = f"DATABASE_URL: the state database {path}"
    if path.stat().st_size == 0:
        raise StateError(
            f"{where} is empty (0 bytes), so its subscriptions, audit log and digest history are gone; "
            "restore it from a backup, or delete the empty file to start a new one"
        )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
            found = [row[0] for row in con.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    if found != ["ok"]:
        raise StateError(
            f"{where} is damaged ({' '.join('; '.join(map(str, found)).split())[:160]}); restore it from a backup, "
            "or move it away to start a new one (its subscriptions, audit log and digest history would be lost)"
        )


def create_sqlite_file(path: Path) -> None:
    """A new state database file, its owner's only (it holds the audit log and digest history;
    SQLite gives its journal files the same mode), made whole under a temporary name and linked
    into place, so no process ever finds it empty (``check_sqlite_file`` refuses an empty one)."""
    import sqlite3
    import tempfile

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as con:
            con.execute("PRAGMA user_version = 1")  # writes the file's first page
            con.commit()
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: theirs stays
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
