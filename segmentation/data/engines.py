"""Where the SQL runs: DuckDB (embedded, over files), any database SQLAlchemy reaches
(PostgreSQL, MySQL/MariaDB, and warehouses with a SQLAlchemy driver), or Spark.

Every engine takes SQL in the product's one dialect (``dialects.compile_sql`` compiles it) and
returns an Arrow table or one row. Every failure becomes one ``DataError`` line that names the
source with its password masked. Only per-customer rows and totals ever come back; order lines
stay in the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from segmentation import runtime
from segmentation.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

FETCH_ROWS = 100_000


def _sessions_setting() -> int:
    return runtime.current().db_sessions


class Engine(Protocol):
    dialect: str
    where: str  # the source as shown in messages (password masked)

    def table(self, sql: str, relation: str | None = None) -> pa.Table: ...

    def batches(self, sql: str, relation: str | None = None) -> pa.RecordBatchReader:
        """The result batch by batch: streamed where the engine streams, else its whole table."""
        ...

    def materialise(self, name: str, sql: str, relation: str | None = None) -> None: ...

    def prepare_scoring(self, sessions: int = 1, few_groups: bool = False) -> None:
        """Session settings for the compiled model's statements; ``few_groups``: the next
        statement groups millions of rows into a few hundred (the personas' histograms)."""
        ...

    def sessions(self) -> int: ...

    def bucket(self, column: str, buckets: int, bucket: int) -> str | None:
        """A condition keeping bucket ``bucket`` of ``buckets`` (None: no hash, keep everyone)."""
        ...

    def staged_relation(self, path: Path) -> str | None:
        """A relation (for FROM) over training's per-customer table, the Parquet file at
        ``path`` (``customer_id``, ``cluster``), or None where the engine cannot read it."""
        ...

    def bucket_of(self, column: str, buckets: int) -> str | None:
        """Each customer's bucket, 0 to ``buckets`` - 1, by a hash of their id (None: no hash)."""
        ...

    def one(self, sql: str, relation: str | None = None) -> tuple[Any, ...]: ...

    def limited(self, share: float) -> contextlib.AbstractContextManager[None]:
        """The engine's memory limit lowered to ``share`` of itself meanwhile (where the process
        sets it: DuckDB's buffer pool; a database's or Spark's memory is their own)."""
        ...

    def release(self, small: bool = False) -> None:
        """Hand back the memory the kept tables take in this process (they are read back when
        next used; ``small``: in a small buffer until the next release); a no-op where they live
        in a server."""
        ...

    def close(self) -> None: ...


def _sql(sql: str, dialect: str, relation: str | None) -> str:
    """The product's SQL in the engine's dialect."""
    from segmentation.data.dialects import compile_sql, with_relation  # lazy: SQLGlot, 60 ms, not for a lookup

    return with_relation(compile_sql(sql, dialect), relation)


@contextlib.contextmanager
def query_errors(where: str, message: Callable[[BaseException], str]) -> Iterator[None]:
    """Any failure of the engine's driver as one DataError line: "<source>: the query failed (…)"."""
    try:
        yield
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{where}: the query failed ({message(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
