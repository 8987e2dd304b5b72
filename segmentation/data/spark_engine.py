"""Spark (local mode or a cluster): the product's SQL compiled to Spark SQL."""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Any

from segmentation import runtime
from segmentation.data.engines import _sql, first_line, query_errors
from segmentation.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa


class SparkEngine:
    """PySpark; ``SEGMENT_SPARK_MASTER`` picks the cluster (default: local mode on every core)."""

    dialect = "spark"

    def __init__(self, where: str):
        self.where = where
        try:
            import warnings

            warnings.filterwarnings("ignore", module=r"pyspark\..*")  # pandas-version notices
            from pyspark.sql import SparkSession
        except ModuleNotFoundError:
            raise DataError(f"{where}: Spark is not installed (pip install 'segment-assistant[spark]')") from None
        try:
            self.spark = (
                SparkSession.builder.master(runtime.current().spark_master)
                .appName("segment")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", str(runtime.current().spark_partitions))
                .getOrCreate()
            )
            self.spark.sparkContext.setLogLevel("OFF")
            import logging

            logging.getLogger("SQLQueryContextLogger").disabled = True  # failures become one DataError line
        except Exception as exc:
            raise DataError(f"{where}: Spark did not start ({first_line(exc)})") from None

    def _errors(self):
        return query_errors(self.where, _spark_message)

    def prepare_scoring(self, sessions: int = 1, few_groups: bool = False) -> None:
        pass  # nothing to set

    def sessions(self) -> int:
        return 1  # Spark shuffles by key and runs every step in parallel already

    def staged_relation(self, path: Path) -> None:
        """None: the executors of a cluster may not see this machine's files; the segments are
        scored again in Spark (``Engine.staged_relation``)."""
        return None

    def bucket(self, column: str, buckets: int, bucket: int) -> str:
        return f"{self.bucket_of(column, buckets)} = {bucket}"

    def bucket_of(self, column: str, buckets: int) -> str:
        return f"PMOD(HASH({column}), {buckets})"

    def register(self, name: str, target: str, query: str | None) -> None:
        """Make ``name`` a view of a Parquet/Delta path, a table, or a query."""
        with self._errors():
            if query is not None:
                df = self.spark.sql(query)
            elif "/" in target or target.endswith((".parquet", ".pq")):
                fmt = "delta" if os.path.isdir(os.path.join(target, "_delta_log")) else "parquet"
                df = self.spark.read.format(fmt).load(target)
            else:
                df = self.spark.table(target)
            df.createOrReplaceTempView(name)

    def table(self, sql: str, relation: str | None = None) -> pa.Table:
        text = _sql(sql, self.dialect, relation)
        with self._errors():
            return self.spark.sql(text).toArrow()

    def limited(self, share: float) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # its memory is the server's own

    def batches(self, sql: str, relation: str | None = None) -> pa.RecordBatchReader:
        """The whole result (``table``), batch by batch."""
        import pyarrow as pa

        result = self.table(sql, relation)
        return pa.RecordBatchReader.from_batches(result.schema, result.to_batches())

    def materialise(self, name: str, sql: str, relation: str | None = None) -> None:
        """A cached temporary view: computed once, on first use, then read from memory."""
        text = _sql(sql, self.dialect, relation)
        with self._errors():
            self.spark.sql(text).cache().createOrReplaceTempView(name)

    def one(self, sql: str, relation: str | None = None) -> tuple[Any, ...]:
        text = _sql(sql, self.dialect, relation)
        with self._errors():
            rows = self.spark.sql(text).collect()
        return tuple(rows[0]) if rows else ()

    def columns(self, relation_sql: str) -> list[str]:
        with self._errors():
            return list(self.spark.sql(f"SELECT * FROM {relation_sql}").columns)

    def release(self, small: bool = False) -> None:
        pass  # the kept tables live in the cluster, not in this process

    def close(self) -> None:
        """Drop what this source cached; the session itself is shared by the process."""
        try:
            for name in ("segment_daily", "segment_source"):
                self.spark.catalog.dropTempView(name)
            self.spark.catalog.clearCache()
        except Exception:  # a session that died takes its caches with it
            pass


def _spark_message(exc: BaseException) -> str:
    text = first_line(exc)
    if text.startswith("An error occurred while calling"):  # py4j's wrapper: the Java cause says what
        full = str(exc)
        root = re.findall(r"Caused by: [\w.$]+: ([^\n]+)", full)  # the deepest cause, else the first exception
        first = re.search(r"(?:SparkException|Error|Exception): ([^\n]+)", full)
        cause = root[-1] if root else first.group(1) if first else None
        if cause:
            text = cause.strip()
    return re.sub(r"\s*SQLSTATE: \w+\s*;?.*$", "", text)
