"""How the domain runs on this machine: threads, the engines' memory and sessions, the Spark
master, the playbook file. The adapters build it from their one settings object
(``segment_cli.settings``) and hand it over with ``configure``; the domain reads ``current()``
and never the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_SESSIONS = 2  # connections a database is scored on at once


@dataclass(frozen=True)
class Runtime:
    threads: int | None = None  # KMeans's (None: 1) and DuckDB's (None: every core)
    duckdb_memory: str = "1GB"  # DuckDB's buffer pool; it spills to disk beyond it
    db_sessions: int = DEFAULT_SESSIONS
    spark_master: str = "local[*]"
    spark_partitions: int = 8
    playbook: Path | None = None  # None: the packaged playbook


_current = Runtime()


def configure(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    return _current
