"""The per-customer rows an engine hands over, turned into the RFM table.

The rows arrive in batches (``Engine.batches``). Each batch is netted as it comes: customers
with returns only, or whose returns equal or exceed their purchases, are counted and left out.
Training may ask for the customer ids to be set aside (``ids_to``): they are written batch by
batch to an Arrow file and never held together. At 9.3M customers, the 32-character ids are
335 MB of the 634 MB frame. The numbers are copied out, and the per-customer table is written
from that file at the end (``serving.assignments``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segmentation.data import relations as rel
from segmentation.data.frames import _numbers, customer_ids
from segmentation.data.hints import hint
from segmentation.data.kinds import RFMTable, SetAsideIds, Source, describe_exclusions
from segmentation.errors import DataError
from segmentation.model.survival import FirstReturns

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class Rows:
    """The netted rows: the numbers, and ``customer_id`` unless the ids were set aside."""

    table: pa.Table
    last_bought: int | None  # the history's last purchase day (days since EPOCH), whoever made it
    netted_out: int  # customers left out by their returns
    ids: SetAsideIds | None = None


@dataclass
class Fetched:
    excluded: dict[str, int]
    gaps: FirstReturns
    rows: Rows | None  # a row per customer; let go of once it is a frame


def net_rows(reader: pa.RecordBatchReader, ids_to: Path | None = None) -> Rows:
    """Every batch netted (``Rows``); with ``ids_to``, the ids written there, in order, and
    whether they come sorted as text (the per-customer table is stored sorted)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kept: list[pa.RecordBatch] = []
    last: int | None = None
    netted = count = 0
    writer, previous, ordered = None, None, True
    schema = reader.schema
    try:
        for batch in reader:
            if not batch.num_rows:
                continue
            bought = pc.greater(batch.column("occasions"), 0)
            latest = pc.max(pc.filter(batch.column("last_day"), bought)).as_py()
            if latest is not None:
                last = latest if last is None else max(last, latest)
            keep = pc.and_(bought, pc.greater(batch.column("monetary"), 0))
            n = int(pc.sum(keep).as_py() or 0)
            if n < batch.num_rows:
                netted += batch.num_rows - n
                batch = batch.filter(keep)
            if ids_to is not None:
                ids = batch.column("customer_id")
                batch = batch.drop_columns(["customer_id"])
                if not len(ids):
                    continue
                if not pa.types.is_string(ids.type):
                    ids = ids.cast(pa.string())  # numbers, or large text: the table stores text
                if writer is None:
                    writer = pa.ipc.new_file(str(ids_to), pa.schema([("customer_id", pa.string())]))
                if ordered:  # within the batch, and across from the batch before
                    inside = pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py() is not False
                    ordered = inside and (previous is None or previous <= ids[0].as_py())
                previous = ids[-1].as_py()
                writer.write_batch(pa.record_batch([ids], names=["customer_id"]))
                count += batch.num_rows
            kept.append(batch)
    finally:
        if writer is not None:
            writer.close()
    if ids_to is not None:
        schema = pa.schema([f for f in schema if f.name != "customer_id"])
    table = pa.Table.from_batches(kept, schema=schema) if kept else schema.empty_table()
    ids = SetAsideIds(ids_to, count, ordered) if ids_to is not None and count else None
    return Rows(table, last, netted, ids)


def rfm_table(
    fetched: Fetched, as_of: dt.date | None, where: str, description: str, currency: str, source: Source | None = None
) -> RFMTable:
    """The RFM table of the fetched rows; ``DataError`` when no customer is left."""
    excluded, gaps, rows = fetched.excluded, fetched.gaps, fetched.rows
    fetched.rows = None
    assert rows is not None
    table, last_bought, set_aside = rows.table, rows.last_bought, rows.ids
    if rows.netted_out:
        excluded = {**excluded, rel.NETTED_OUT: rows.netted_out}
    if not table.num_rows:
        if rows.netted_out:
            raise DataError(
                f"{where}: no customer has a positive spend net of returns (excluded: {describe_exclusions(excluded)})"
            )
        if as_of is not None and excluded.get("after_as_of"):
            raise DataError(
                f"{where}: no orders on or before {as_of.isoformat()} (excluded: {describe_exclusions(excluded)})"
            )
        raise DataError(
            f"{where}: no usable orders left after filtering (excluded: {describe_exclusions(excluded)})"
            + (hint(source, excluded) if source is not None else "")
        )
    del rows
    import pandas as pd
    import pyarrow as pa

    last_day = _numbers(table, "last_day", np.int64)
    latest = rel.EPOCH + dt.timedelta(days=int(last_bought or 0))
    snapshot = as_of or (latest + dt.timedelta(days=1))
    recency = ((snapshot - rel.EPOCH).days - last_day).astype(np.int32)
    del last_day
    occasions = _numbers(table, "occasions", np.int32)
    frequency = _numbers(table, "frequency", np.int32)
    monetary = _numbers(table, "monetary", np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(occasions > 1, _numbers(table, "span", np.float64) / (occasions - 1), np.nan)
    ids = None if set_aside is not None else table.column("customer_id")
    del table  # the numbers are copied out: only the ids' buffers stay while they become a column
    columns = {} if ids is None else {"customer_id": customer_ids(ids)}
    rfm = pd.DataFrame(
        {
            **columns,
            "recency": recency,
            "frequency": frequency,
            "monetary": monetary,
            "occasions": occasions,
            "gap": gap,
        },
        copy=False,
    )
    del ids, columns
    pa.default_memory_pool().release_unused()  # the fetched table's memory back to the system
    return RFMTable(
        frame=rfm,
        snapshot_date=snapshot,
        latest_purchase=latest,
        orders=int(frequency.sum(dtype=np.int64)),
        excluded=excluded,
        source=description,
        gaps=gaps,
        currency=currency,
        as_of=as_of,
        ids=set_aside,
    )
