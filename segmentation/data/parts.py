"""A large file scored in parts: written once into parts by a hash of the customer ids, each part
then aggregated on its own, so a digest stays within DuckDB's memory limit at any size.

Grouping every order of a file by customer in one statement needs memory in proportion to the
customers (100M order lines of 93M customers failed at a 1 GB and a 2 GB limit). A customer's
orders all fall in one part, so the parts' totals add up to the whole file's exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.data.duckdb_engine import DuckDBEngine, limit_bytes
from segmentation.data.kinds import Source, TransactionsSource
from segmentation.data.sqltext import sql_str
from segmentation.errors import DataError

if TYPE_CHECKING:
    from segmentation.data.plan import _Plan

# Lines per part per GB of the limit, measured on 2 cores (bench/bench_scale.py): in a part at
# 0.6 GB, 3.1M lines took 3.3 s and 4M lines 4.9 s. A file of more lines is scored in parts:
# 10M lines in one statement took 15 s and 1.15 GB at a 1 GB limit, in four parts 16.5 s and
# 0.75 GB; 100M lines failed at 1 GB and 2 GB in one statement, in 34 parts they took 174 s.
PART_LINES_PER_GB = 3_000_000
MAX_PARTS = 256  # whatever the limit: a part per 0.4M lines of a 100M-line file at the least
SAMPLE_BYTES = 4 << 20  # what a CSV file's lines per byte are read from (decompressed)
# Writing the parts fills whatever memory it is given (1.1 GB at 1 GB, 0.39 GB at 0.3 GB) at
# nearly the same speed: it and the parts get this share of the limit, the rest is left to the
# process (the model, the at-risk rows that come back).
PART_SHARE = 0.6


def estimated_lines(path: Path) -> int:
    """The number of rows of a file: a Parquet file's footer says; a CSV file's first 4 MB
    (read through gzip for a .gz file) gives its lines per byte. Cheap, close, never exact."""
    if path.name.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            return int(pq.read_metadata(path).num_rows)
        except (OSError, ValueError):
            return 0  # the scoring query then says what is wrong with the file
    import gzip

    try:
        size = path.stat().st_size
        with path.open("rb") as raw:
            if path.name.lower().endswith(".gz"):
                with gzip.GzipFile(fileobj=raw) as text:
                    lines = text.read(SAMPLE_BYTES).count(b"\n")
                used = raw.tell()  # the compressed bytes those lines took (with gzip's read-ahead)
            else:
                lines, used = raw.read(SAMPLE_BYTES).count(b"\n"), min(size, SAMPLE_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile):
        return 0  # the scoring query then says what is wrong with the file
    return int(size * lines / used) if used else 0


def part_count(source: Source, plan: _Plan) -> int:
    """How many parts to score ``source`` in: 1 (one statement) unless it is a file of more lines
    than one part holds at DuckDB's memory limit."""
    if not isinstance(source, TransactionsSource) or not isinstance(plan.engine, DuckDBEngine) or plan.rebase is None:
        return 1
    memory = limit_bytes(plan.engine.limit)
    if memory is None:
        return 1
    per_part = max(1, int(PART_LINES_PER_GB * memory / 1e9))
    return min(MAX_PARTS, max(1, -(-estimated_lines(source.path) // per_part)))


@contextlib.contextmanager
def split(plan: _Plan, count: int) -> Iterator[list[_Plan]]:
    """The plan over each of ``count`` parts of its file (a part without customers is left
    out), written to the temporary folder and removed afterwards. The engine's memory limit
    is the ``PART_SHARE`` of its own meanwhile."""
    assert plan.rebase is not None and plan.split_key is not None
    engine = plan.engine
    assert isinstance(engine, DuckDBEngine)
    ref, key, columns = plan.split_key
    try:
        folder = Path(tempfile.mkdtemp(prefix="segment-parts-", dir=tempfile.gettempdir()))
    except OSError as exc:
        raise DataError(f"{engine.where}: cannot be split into parts in the temporary folder ({exc})") from None
    try:
        with engine.limited(PART_SHARE):
            engine.write_parts(
                f"SELECT {', '.join(columns)}, HASH({key}) % {count} AS segment_part FROM {ref} AS src", folder
            )
            parts = [folder / f"segment_part={k}" for k in range(count)]
            yield [plan.rebase(f"read_parquet({sql_str(str(p / '*.parquet'))})") for p in parts if p.is_dir()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
