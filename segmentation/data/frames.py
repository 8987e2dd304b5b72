"""Arrow tables from an engine turned into pandas frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segmentation.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def _numbers(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)


def customer_ids(ids) -> pd.Series:
    """Customer ids from the engine as text, kept in Arrow memory (9M ids as Python strings would
    take three times the space)."""
    import pandas as pd
    import pyarrow as pa

    if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
        ids = ids.cast(pa.string())
    series = ids.to_pandas()
    if series.dtype == object:  # pandas before 3 turns Arrow text into Python strings
        series = pd.Series(pd.arrays.ArrowStringArray(ids))
    return series.rename("customer_id")


def window_frame(table: pa.Table) -> pd.DataFrame:
    """The rows of ``relations.windows_select`` as a frame: the cut-off as a date, each
    customer's usual gap as of it (NaN with one purchase day) and whether they came back."""
    import pandas as pd

    cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "customer_id"}
    frame = pd.DataFrame(
        {
            "customer_id": customer_ids(table.column("customer_id")),
            "cutoff": pd.to_datetime(np.asarray(cols["cutoff"], dtype=np.int64), unit="D").date,
            **{
                name: np.asarray(cols[name], dtype=np.float64 if name in ("monetary", "later_spend") else np.int64)
                for name in ("recency", "tenure", "occasions", "frequency", "monetary", "later_days", "later_spend")
            },
        }
    )
    occasions = frame["occasions"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["gap"] = np.where(
            occasions > 1, (frame["tenure"] - frame["recency"]).to_numpy(np.float64) / (occasions - 1), np.nan
        )
    frame["returned"] = frame["later_days"].to_numpy() > 0
    return frame


def staged_batches(path: Path, batch_size: int = 200_000) -> Iterator[pa.RecordBatch]:
    """Training's per-customer table (``customer_id``, ``cluster``) batch by batch; a damaged
    file is named as that file (a DataError), never taken for the shop's data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["customer_id", "cluster"])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"the per-customer table training has just written ({path}) cannot be read: {exc}") from None


def check_staged(path: Path) -> None:
    """Raise ``staged_batches``' DataError now if the file cannot be opened as Parquet."""
    next(iter(staged_batches(path, 1)), None)
