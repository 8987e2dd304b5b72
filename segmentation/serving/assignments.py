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


def write_assignments(path: Path, frame: pd.DataFrame) -> None:
    """Every customer's row as one Parquet file sorted by customer id (zstd), so a lookup reads a
    single row group and an export streams; written in bulk, not row by row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    gap = frame["gap"].astype(float)
    chance = frame["chance"].astype(float) if "chance" in frame else gap * np.nan
    ids = frame["customer_id"]
    try:  # text already in Arrow memory (the usual case) goes across without a copy
        id_column = pa.array(ids) if str(ids.dtype) != "object" else None
        if id_column is not None and not (
            pa.types.is_string(id_column.type) or pa.types.is_large_string(id_column.type)
        ):
            id_column = id_column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        id_column = None
    if id_column is None:
        id_column = pa.array(ids.astype(str).to_numpy(), pa.string())
    table = pa.table(
        {
            "customer_id": id_column,
            "recency": pa.array(frame["recency"].to_numpy(np.int32)),
            "frequency": pa.array(frame["frequency"].to_numpy(np.int32)),
            "monetary": pa.array(frame["monetary"].to_numpy(np.float64)),
            "occasions": pa.array(frame["occasions"].to_numpy(np.int32)),
            "gap": pa.array(gap.to_numpy(), pa.float64(), mask=gap.isna().to_numpy()),
            "cluster": pa.array(frame["cluster"].to_numpy(np.int32)),
            "at_risk": pa.array(frame["at_risk"].to_numpy(bool)),
            # float32: seven significant digits for a share shown to four decimals; it is the
            # largest column after the ids (83 of 285 MB at 9.3M customers as float64)
            "chance": pa.array(chance.to_numpy(np.float32), pa.float32(), mask=chance.isna().to_numpy()),
        }
    )
    n = table.num_rows
    ordered = n < 2 or pc.all(pc.less_equal(table["customer_id"][: n - 1], table["customer_id"][1:])).as_py()
    if not ordered:  # engines hand over RFM sorted by id already; sorting 9M ids would cost ~15 s
        table = table.sort_by("customer_id")
    # the sorted ids share their first characters: prefix-coded (DELTA_BYTE_ARRAY) they take 14.3
    # bytes each instead of 15.7 (32 hex characters; 93M customers: 1.33 GB of a 1.93 GB version)
    pq.write_table(
        table,
        path,
        row_group_size=ROW_GROUP,
        compression="zstd",
        write_statistics=True,
        use_dictionary=[c for c in table.column_names if c != "customer_id"],
        column_encoding={"customer_id": "DELTA_BYTE_ARRAY"},
    )


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
