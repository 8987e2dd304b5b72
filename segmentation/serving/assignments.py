"""The per-customer table of a model version: one Parquet file, sealed, looked up by customer id."""

from __future__ import annotations

import bisect
import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.data.frames import customer_ids
from segmentation.data.kinds import SetAsideIds
from segmentation.errors import ModelIntegrityError
from segmentation.serving.atomic import atomic_write_bytes, file_sha256
from segmentation.serving.signing import SEAL, ModelKey

if TYPE_CHECKING:
    import pandas as pd


# -- per-customer assignments -------------------------------------------------------------

ASSIGNMENT_COLUMNS = (
    "customer_id",
    "recency",
    "frequency",
    "monetary",
    "occasions",
    "gap",
    "cluster",
    "at_risk",
    "chance",
)


@dataclass(frozen=True)
class CustomerRow:
    customer_id: str
    recency: int
    frequency: int  # orders
    monetary: float
    occasions: int  # purchase days
    gap: float | None  # their usual days between purchase days; None with one purchase day
    cluster: int
    at_risk: bool
    chance: float | None = None  # their chance to buy again within the model's horizon, as of training


ROW_GROUP = 64_000  # rows per Parquet row group: a lookup reads one group, found by its min/max ids


SEAL_MAX_BYTES = 4096


def seal_path(table: Path) -> Path:
    return table.with_name(table.name + ".verified")


def write_assignments(path: Path, frame: pd.DataFrame, ids: SetAsideIds | None = None) -> None:
    """Every customer's row as one Parquet file sorted by customer id (zstd), so a lookup reads a
    single row group and an export streams; written in bulk, not row by row. ``ids``: the frame
    has no ``customer_id``, its ids wait in that file in the frame's order (training's read) and
    are streamed in a row group at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if ids is not None and ids.rows != len(frame):
        raise ValueError(f"{ids.rows} customer ids set aside for {len(frame)} rows")
    if ids is not None and not ids.ordered:  # rare (engines hand RFM over sorted): whole, then sorted
        frame, ids = frame.assign(customer_id=customer_ids(_read_ids(ids.path)).array), None
    numbers = _numbers(frame)
    if ids is None:
        table = pa.table({"customer_id": _id_column(frame["customer_id"]), **_arrays(numbers, slice(None))})
        n = table.num_rows
        ordered = n < 2 or pc.all(pc.less_equal(table["customer_id"][: n - 1], table["customer_id"][1:])).as_py()
        if not ordered:  # engines hand over RFM sorted by id already; sorting 9M ids would cost ~15 s
            table = table.sort_by("customer_id")
        pq.write_table(table, path, row_group_size=ROW_GROUP, **_PARQUET)
        return
    start = 0
    with pa.OSFile(str(ids.path)) as source, pa.ipc.open_file(source) as reader:
        batches = (reader.get_batch(i).column(0) for i in range(reader.num_record_batches))
        writer = None
        for block in _blocks(batches, ROW_GROUP):
            table = pa.table({"customer_id": block, **_arrays(numbers, slice(start, start + len(block)))})
            start += len(block)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, **_PARQUET)
            writer.write_table(table, row_group_size=ROW_GROUP)
        if writer is not None:
            writer.close()


# the sorted ids share their first characters: prefix-coded (DELTA_BYTE_ARRAY) they take 14.3
# bytes each instead of 15.7 (32 hex characters; 93M customers: 1.33 GB of a 1.93 GB version)
_PARQUET: dict[str, Any] = {
    "compression": "zstd",
    "write_statistics": True,
    "use_dictionary": [c for c in ASSIGNMENT_COLUMNS if c != "customer_id"],
    "column_encoding": {"customer_id": "DELTA_BYTE_ARRAY"},
}


def _numbers(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The table's columns after the id as NumPy arrays, each with its mask of missing values."""
    gap = frame["gap"].to_numpy(np.float64)
    # float32: seven significant digits for a share shown to four decimals; it is the largest
    # column after the ids (83 of 285 MB at 9.3M customers as float64)
    chance = frame["chance"].to_numpy(np.float32) if "chance" in frame else np.full(len(frame), np.nan, np.float32)
    return {
        "recency": (frame["recency"].to_numpy(np.int32), None),
        "frequency": (frame["frequency"].to_numpy(np.int32), None),
        "monetary": (frame["monetary"].to_numpy(np.float64), None),
        "occasions": (frame["occasions"].to_numpy(np.int32), None),
        "gap": (gap, np.isnan(gap)),
        "cluster": (frame["cluster"].to_numpy(np.int32), None),
        "at_risk": (frame["at_risk"].to_numpy(bool), None),
        "chance": (chance, np.isnan(chance)),
    }


def _arrays(numbers: dict[str, tuple[np.ndarray, np.ndarray | None]], rows: slice) -> dict[str, Any]:
    import pyarrow as pa

    return {
        name: pa.array(values[rows], mask=None if mask is None else mask[rows])
        for name, (values, mask) in numbers.items()
    }


def _id_column(ids: pd.Series) -> Any:
    """The ids as Arrow text: without a copy when already in Arrow memory (the usual case)."""
    import pyarrow as pa

    try:
        column = pa.array(ids) if str(ids.dtype) != "object" else None
        if column is not None and not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        column = None
    return column if column is not None else pa.array(ids.astype(str).to_numpy(), pa.string())


def _read_ids(path: Path) -> Any:
    import pyarrow as pa

    with pa.OSFile(str(path)) as source, pa.ipc.open_file(source) as reader:
        return reader.read_all().column("customer_id")  # chunked: no 2 GB limit on one array


def _blocks(arrays: Iterator[Any], size: int) -> Iterator[Any]:
    """The arrays' values in blocks of ``size`` (the last one shorter); only a block spanning two
    arrays is copied."""
    import pyarrow as pa

    carry = None
    for array in arrays:
        start = 0
        if carry is not None:
            start = min(size - len(carry), len(array))
            carry = pa.concat_arrays([carry, array.slice(0, start)])
            if len(carry) < size:
                continue
            yield carry
            carry = None
        while len(array) - start >= size:
            yield array.slice(start, size)
            start += size
        if start < len(array):
            carry = array.slice(start)
    if carry is not None:
        yield carry


_COLUMNS = ", ".join(ASSIGNMENT_COLUMNS)


def _row(t: tuple) -> CustomerRow:
    cid, r, f, m, o, g, c, a, p = t
    return CustomerRow(
        cid,
        int(r),
        int(f),
        float(m),
        int(o),
        None if g is None else float(g),
        int(c),
        bool(a),
        None if p is None or p != p else float(str(np.float32(p))),  # the stored float32's own digits
    )


class Assignments:
    """Read-only view of one version's per-customer table, checked against the SHA-256 its
    signed manifest records: before the first read, and again whenever the file changes on disk."""

    def __init__(self, path: Path, sha256: str | None, size: int | None, key: ModelKey | None = None):
        self.path = path
        self._sha256, self._size = sha256, size
        self._key = key  # signs the seal that lets a fresh process skip hashing an unchanged file
        self._seen: tuple[int, ...] | None = None  # (inode, size, mtime, ctime) when last verified
        self._lock = threading.Lock()
        self._index: tuple[tuple[int, ...] | None, Any, list[str], list[str]] | None = None

    def _stat(self) -> tuple[int, ...]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ModelIntegrityError(f"{self.path.name} is missing: retrain to rebuild the customer table.") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)  # ctime: no one can set it back

    def _mismatch(self) -> ModelIntegrityError:
        return ModelIntegrityError(
            f"{self.path.name} does not match the checksum recorded when it was saved (changed or "
            "truncated); refusing to answer from it. Retrain, or roll back to an earlier version."
        )

    def check_size(self) -> None:
        """The cheap part of ``verify``: the file is there, with the size recorded."""
        if self._stat()[1] != self._size:
            raise self._mismatch()

    def verify(self) -> None:
        with self._lock:
            seen = self._stat()
            if seen == self._seen:
                return
            if self._sealed(seen):
                self._seen = seen
                return
            if not self._sha256 or file_sha256(self.path) != (self._sha256, self._size):
                raise self._mismatch()
            self._seen = seen
            self._seal(seen)

    # A seal records, signed with the model key, that the file with this (inode, size, mtime,
    # ctime) hashed to the manifest's SHA-256. The kernel moves ctime on every write and no one can
    # set it back, so a matching seal means the same bytes: a cold `segment customer ID` at 10M
    # customers then skips hashing 165 MB. Without the key a seal cannot be forged.
    def _seal_fields(self, seen: tuple[int, ...]) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self._sha256, "bytes": self._size, "stat": list(seen)}

    def _sealed(self, seen: tuple[int, ...]) -> bool:
        if self._key is None or not self._sha256:
            return False
        try:
            with open(seal_path(self.path), "rb") as fh:
                seal = json.loads(fh.read(SEAL_MAX_BYTES))  # a seal is ~300 bytes: a huge file is not read whole
        except (OSError, ValueError):
            return False
        if not isinstance(seal, dict) or not self._key.verifies(seal, SEAL):
            return False
        return {k: seal.get(k) for k in ("file", "sha256", "bytes", "stat")} == self._seal_fields(seen)

    def _seal(self, seen: tuple[int, ...]) -> None:
        if self._key is None:
            return
        seal = self._seal_fields(seen)
        seal["signature"] = self._key.sign(seal, SEAL)
        with contextlib.suppress(OSError):  # a read-only folder: the next process hashes again
            atomic_write_bytes(seal_path(self.path), json.dumps(seal).encode())

    def _query(self, where: str = "", args: Sequence[Any] = (), order: str = "") -> Any:
        """(connection, cursor) over the verified file: a fresh in-memory DuckDB connection each
        time (cheap, and safe while other threads read)."""
        self.verify()
        import duckdb

        con = duckdb.connect()
        sql = f"SELECT {_COLUMNS} FROM read_parquet(?)" + (f" WHERE {where}" if where else "") + order
        return con, con.execute(sql, [str(self.path), *args])

    def _row_groups(self) -> tuple[Any, list[str], list[str]] | None:
        """The file's footer and each row group's smallest and largest id, read once per verified
        file; None when the statistics are missing."""
        import pyarrow.parquet as pq

        with self._lock:
            if self._index is None or self._index[0] != self._seen:
                meta = pq.ParquetFile(self.path).metadata
                col = meta.schema.to_arrow_schema().get_field_index("customer_id")
                stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
                if all(s is not None and s.has_min_max for s in stats):
                    self._index = (self._seen, meta, [s.min for s in stats], [s.max for s in stats])
                else:
                    self._index = (self._seen, None, [], [])
            _, meta, lows, highs = self._index
        return None if meta is None else (meta, lows, highs)

    def get(self, customer_id: str) -> CustomerRow | None:
        """One customer: the row group whose id range holds it is found from the footer and read
        alone (a few milliseconds at 10M customers)."""
        import pyarrow.parquet as pq

        self.verify()
        groups = self._row_groups()
        if groups is None:  # no statistics: let DuckDB scan
            con, cur = self._query("customer_id = ?", [customer_id])
            try:
                t = cur.fetchone()
            finally:
                con.close()
            return None if t is None else _row(t)
        meta, lows, highs = groups
        i = bisect.bisect_right(lows, customer_id) - 1
        if i < 0 or customer_id > highs[i]:
            return None
        table = pq.ParquetFile(self.path, metadata=meta).read_row_group(i, columns=list(ASSIGNMENT_COLUMNS))
        # the file is sorted by id: bisect the row group's ids (pc.index and to_numpy would import
        # pandas through pyarrow's conversions, a third of a second on a cold start)
        ids = table.column("customer_id").to_pylist()
        j = bisect.bisect_left(ids, customer_id)
        if j >= len(ids) or ids[j] != customer_id:
            return None
        r = table.slice(j, 1).to_pylist()[0]
        return _row(tuple(r[c] for c in ASSIGNMENT_COLUMNS))

    def frame(self) -> pd.DataFrame:
        """Every customer's row (the RFM columns, cluster and at_risk), from the verified file."""
        import pyarrow.parquet as pq

        self.verify()
        return pq.read_table(self.path, columns=list(ASSIGNMENT_COLUMNS)).to_pandas()

    def members(self, clusters: Sequence[int] | None = None, at_risk_only: bool = False) -> Iterator[CustomerRow]:
        """Customers of ``clusters`` (all when None), optionally only those at risk, biggest
        spenders first."""
        where: list[str] = []
        args: list[Any] = []
        if clusters is not None:
            where.append(f"cluster IN ({','.join('?' * len(clusters))})")
            args += [int(c) for c in clusters]
        if at_risk_only:
            where.append("at_risk")
        con, cur = self._query(" AND ".join(where), args, " ORDER BY monetary DESC, customer_id")
        try:
            while batch := cur.fetchmany(10_000):
                for t in batch:
                    yield _row(t)
        finally:
            con.close()
