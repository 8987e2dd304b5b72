"""DuckDB: files (CSV, Parquet) read and aggregated in SQL, streaming and spilling to disk within a memory limit."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentation import runtime
from segmentation.data.engines import _sql, first_line
from segmentation.data.sqltext import sql_str
from segmentation.errors import DataError, EngineMemoryError

if TYPE_CHECKING:
    import pyarrow as pa


def duckdb_connect():
    """An in-memory DuckDB in UTC that spills to a temporary folder instead of running out of memory."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = {sql_str(tempfile.gettempdir())}")
    # DuckDB's buffer pool is capped and spills beyond it: by default it would take 80% of the
    # machine's memory for the per-customer aggregation of a large shop
    limit = _configured_limit()
    if limit is not None:
        con.execute(f"SET memory_limit = '{limit}'")
    # DuckDB's allocator keeps the pages it freed (the aggregation's hash tables: 0.85 GB at 9.3M
    # customers) until its background threads hand them back; without them the process carries
    # them through the fit and the naming, the peak of a training
    con.execute("SET allocator_background_threads = true")
    # DuckDB 2.0 turns a TRY_CAST of a file's column into the CSV reader's own strict cast
    # (duckdb/duckdb#23818): one unreadable amount stopped the whole read ("Conversion Error")
    # instead of leaving its order out as bad_amount. Versions without that optimizer lack the bug.
    with contextlib.suppress(duckdb.Error):
        con.execute("SET disabled_optimizers = 'type_pushdown'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        "SET enable_progress_bar = false"
    )  # the product prints its own progress lines  # no query here relies on it: each says ORDER BY
    threads = runtime.current().threads
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _configured_limit() -> str | None:
    limit = runtime.current().duckdb_memory
    return limit if re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", limit, re.I) else None  # checked again: it becomes SQL


_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def limit_bytes(limit: str) -> float | None:
    """DuckDB's memory limit as bytes ("1GB", "6 GiB", "953.6 MiB"); None when it says otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b\s*", limit, re.I)
    return float(m.group(1)) * _UNITS[(m.group(2) or "").lower()] if m else None


BATCH_ROWS = 1 << 20  # rows per batch asked of a streamed result (an ORDER BY gives its own 122,880)
SMALL_MB = 256  # the buffer pool while a kept table is read back (``DuckDBEngine.release``)


def _limit(con) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])


class DuckDBEngine:
    dialect = "duckdb"

    def __init__(self, where: str):
        self.where = where
        self.con = duckdb_connect()
        self.limit = _configured_limit() or _limit(self.con)  # as set, put back exactly after a release

    def _error(self, exc: BaseException) -> DataError:
        import duckdb

        # a streamed result's failure reaches Python as an OSError carrying DuckDB's message
        memory = isinstance(exc, duckdb.OutOfMemoryException) or str(exc).startswith("Out of Memory Error")
        if memory and "temp_directory" in str(exc):
            return DataError(f"{self.where}: the disk of the temporary folder is full ({first_line(exc)})")
        if memory:
            # grouping tens of millions of customers by their ids needs more than the buffer pool
            # can spill (100M orders of 93M customers: failed at 1 GB and 2 GB, ran at 6 GB)
            return EngineMemoryError(
                f"{self.where}: too large for DuckDB's memory limit ({self.limit}); raise it with "
                "SEGMENT_DUCKDB_MEMORY (93M customers need 6GB) or read it from a database or Spark"
            )
        return DataError(f"{self.where}: cannot be read ({first_line(exc)})")

    def _run(self, sql: str, relation: str | None):
        import duckdb

        try:
            return self.con.execute(_sql(sql, self.dialect, relation))
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def table(self, sql: str, relation: str | None = None) -> pa.Table:
        import duckdb

        try:
            result = self.con.sql(_sql(sql, self.dialect, relation))
            # DuckDB 1.x names it fetch_arrow_table, 2.x to_arrow_table
            fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
            return fetch()
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def batches(self, sql: str, relation: str | None = None) -> pa.RecordBatchReader:
        """The result streamed batch by batch; a failure mid-way is this engine's DataError."""
        import duckdb
        import pyarrow as pa

        try:
            result = self.con.sql(_sql(sql, self.dialect, relation))
            reader = (getattr(result, "to_arrow_reader", None) or result.fetch_record_batch)(BATCH_ROWS)
        except duckdb.Error as exc:
            raise self._error(exc) from None

        def batches():
            try:
                yield from reader
            except (duckdb.Error, pa.ArrowException, OSError) as exc:  # mid-stream: a plain OSError
                raise self._error(exc) from None

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def materialise(self, name: str, sql: str, relation: str | None = None) -> None:
        """Keep a query's result as a temporary table, so later queries do not recompute it."""
        import duckdb

        text = _sql(sql, self.dialect, relation)
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {text}")
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def one(self, sql: str, relation: str | None = None) -> tuple[Any, ...]:
        rows = self._run(sql, relation).fetchall()  # fetched to the end: DuckDB 2 refuses the next query otherwise
        return tuple(rows[0]) if rows else ()

    def ids_counted_unique(self, relation: str, column: str) -> bool:
        """Whether every row of ``relation`` has a ``column`` and no two rows share it, as text
        (``KEY_TEXT``, as the Olist joins compare ids). A file declares no key, so its rows are
        counted: 10M Olist-layout orders in 1.6 s, customers in 1.2 s within 1 GB. False where
        that cannot be read (a missing column, a damaged file: the orders' own query then says
        what is wrong)."""
        try:  # COUNT(DISTINCT) leaves NULLs out: equal to COUNT(*), every row has an id of its own
            row = self.one(f"SELECT COUNT(*) = COUNT(DISTINCT KEY_TEXT({column})) FROM {relation} AS r")
        except DataError:
            return False
        return bool(row and row[0])

    def prepare_scoring(self, sessions: int = 1, few_groups: bool = False) -> None:
        pass  # nothing to set

    def sessions(self) -> int:
        return 1  # DuckDB runs every step of a statement on every core already

    def staged_relation(self, path: Path) -> str:
        """Training's per-customer table, read where it lies (``Engine.staged_relation``)."""
        return f"read_parquet({sql_str(str(path))})"

    def bucket(self, column: str, buckets: int, bucket: int) -> str:
        return f"{self.bucket_of(column, buckets)} = {bucket}"

    def bucket_of(self, column: str, buckets: int) -> str:
        return f"HASH({column}) % {buckets}"

    def columns(self, relation_sql: str) -> list[str]:
        import duckdb

        try:
            return [r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()]
        except duckdb.Error as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def limited(self, share: float) -> Iterator[None]:
        """The memory limit lowered to ``share`` of its own meanwhile (unchanged if it is not a size)."""
        memory = limit_bytes(self.limit)
        if memory is None:
            yield
            return
        self._run(f"SET memory_limit = '{int(memory * share) >> 20}MiB'", None)
        try:
            yield
        except BaseException:
            with contextlib.suppress(DataError):  # the failure that got here is the one to say
                self._run(f"SET memory_limit = {sql_str(self.limit)}", None)
            raise
        self._run(f"SET memory_limit = {sql_str(self.limit)}", None)

    def write_parts(self, sql: str, folder: Path) -> None:
        """A query's rows written as Parquet files in ``folder``, one subfolder per value of its
        ``segment_part`` column (``segment_part=0``, ...)."""
        import duckdb

        text = _sql(sql, self.dialect, None)
        target = sql_str(str(folder))
        try:
            # zstd at its fastest level: 10% faster than the default snappy, 42% less disk
            options = "FORMAT parquet, PARTITION_BY (segment_part), COMPRESSION zstd, COMPRESSION_LEVEL 1, OVERWRITE"
            self.con.execute(f"COPY ({text}) TO {target} ({options})")
        except duckdb.IOException as exc:
            if str(folder) not in str(exc) and "space left" not in str(exc):
                raise self._error(exc) from None  # the source, not the parts: "cannot be read"
            raise DataError(
                f"{self.where}: cannot be split into parts in the temporary folder ({first_line(exc)})"
            ) from None
        except duckdb.Error as exc:
            raise self._error(exc) from None

    def release(self, small: bool = False) -> None:
        """The temporary tables leave the buffer pool for the spill folder: lowering the limit
        below what they take evicts them (DuckDB has no other way to ask), then it is put back,
        or (``small``) kept at ``SMALL_MB`` until the next release, for a statement that reads
        a kept table back: the blocks it reads are then not all kept in memory (the windows of
        10M Olist-layout orders read the per-day table: +0.26 GB instead of +0.9, as fast)."""
        import duckdb

        try:
            self.con.execute("SET memory_limit = '16MB'")
        except duckdb.Error:
            pass  # what could not be evicted stays in memory: slower to nothing, never wrong
        limit = self.limit
        if small and (limit_bytes(self.limit) or 0) > 2 * SMALL_MB * 1e6:  # a smaller limit set by hand stays
            limit = f"{SMALL_MB}MB"
        try:
            self.con.execute(f"SET memory_limit = {sql_str(limit)}")
        except duckdb.Error as exc:  # never left at 16 MB without saying so
            raise self._error(exc) from None

    def close(self) -> None:
        self.con.close()
