"""Synthetic order history in the Olist layout, in three shapes real shops have.

- ``marketplace`` (the default): about 97% of people buy once; a repeat tail places 2–15
  orders, 60 days apart on average; two years of purchases with growth. Orders that would
  fall after the end are not in the history (as in a real export: the customers go on).
- ``wholesale``: most customers return every few weeks for two years; few drop out.
- ``catalogue``: three years of history, customers return every few months but most have
  dropped out, so most are lapsed or lost by the end.

Repeat behaviour in the last two follows the classic buy-till-you-die story: each customer buys
at their own rate (gamma distributed across customers) and after each purchase drops out with
their own probability (beta distributed). Order values are lognormal; some orders are paid in
several payment rows; about 3% are not delivered; every order has a fresh ``customer_id`` (the
person is ``customer_unique_id``). Output is deterministic for a shape and seed and written in
chunks, so 10M orders take seconds and bounded memory.

With ``layout="transactions"`` the same shop is written as one Parquet file of its delivered
orders instead (``transactions.parquet``: the person, the order, when, the order's value), streamed
chunk by chunk, so 100M orders need no more memory than 100k.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segmentation.data.kinds import LAYOUTS, OLIST_FILES
from segmentation.data.olist_sql import OLIST_PERSONA_TABLES
from segmentation.data.sample_catalogue import _hex_ids, _items, catalogue
from segmentation.errors import DataError, InputError

START = dt.datetime(2023, 1, 1)
DAYS = 730
CHUNK_CUSTOMERS = 250_000
REPEAT_SHARE = 0.03
NOT_DELIVERED_SHARE = 0.03
SPLIT_PAYMENT_SHARE = 0.04
NO_PAYMENT_SHARE = 0.00005
OTHER_STATUSES = np.array(["shipped", "canceled", "unavailable", "invoiced", "processing"])
PAYMENT_TYPES = np.array(["credit_card", "boleto", "voucher", "debit_card"])
PAYMENT_TYPE_P = np.array([0.74, 0.19, 0.05, 0.02])
STATES = np.array(["SP", "RJ", "MG", "RS", "PR", "SC", "BA", "DF", "GO", "ES"])
STATE_P = np.array([0.42, 0.13, 0.12, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02, 0.11])
MAX_ORDERS = 500_000_000
TRANSACTIONS_FILE = "transactions.parquet"
# the columns of that file, as `segment train` is told them
TRANSACTIONS_COLUMNS = {
    "customer_col": "customer_id",
    "order_col": "order_id",
    "date_col": "ordered_at",
    "amount_col": "amount",
}


def _orders_per_customer(rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.ones(n, dtype=np.int64)
    repeat = rng.random(n) < REPEAT_SHARE
    k[repeat] = 2 + np.minimum(rng.geometric(0.55, size=int(repeat.sum())) - 1, 13)
    return k


def _purchase_times(rng: np.random.Generator, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The marketplace's purchases: ``k`` orders a person would place, the first at a time that
    grows with the shop, the rest at exponential gaps (60 days on average). Orders that would
    fall after the end of the history are not in it (the person may show fewer orders, or one):
    the history ends, the customers do not. Returns the orders inside per person and their
    times (seconds since START), grouped by person."""
    n = len(k)
    # First purchase: density grows linearly (x3 over the two years): inverse CDF of (t+t^2)/2.
    u = rng.random(n)
    first = (-1.0 + np.sqrt(1.0 + 8.0 * u)) / 2.0
    owner = np.repeat(np.arange(n), k)
    gaps = rng.exponential(60.0 / DAYS, size=len(owner))
    starts = np.cumsum(k) - k
    gaps[starts] = 0.0
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[starts], k)
    t = first[owner] + cum
    inside = t < 1.0
    return np.bincount(owner[inside], minlength=n).astype(np.int64), (t[inside] * DAYS * 86400).astype(np.int64)


@dataclass(frozen=True)
class Shape:
    """How a kind of shop buys. ``gap_days`` and ``dropout`` are means across customers."""

    name: str
    days: int
    customers_per_chunk: int
    gap_days: float = 0.0  # mean days between purchases (buy-till-you-die shapes)
    rate_shape: float = 2.0  # gamma shape of the purchase rate: lower is more varied
    dropout: float = 0.0  # mean chance of dropping out after each purchase
    dropout_concentration: float = 10.0  # beta a + b
    acquisition: str = "growth"  # first purchases: "growth" (x3 over the years) or "decline"
    value_log_mean: float = 4.55
    value_log_sd: float = 0.75
    max_orders_per_customer: int = 15


SHAPES: dict[str, Shape] = {
    "marketplace": Shape("marketplace", DAYS, CHUNK_CUSTOMERS),
    "wholesale": Shape(
        "wholesale",
        730,
        20_000,
        gap_days=21.0,
        rate_shape=3.0,
        dropout=0.03,
        dropout_concentration=30.0,
        acquisition="growth",
        value_log_mean=6.2,
        value_log_sd=0.6,
        max_orders_per_customer=400,
    ),
    "catalogue": Shape(
        "catalogue",
        1095,
        100_000,
        gap_days=110.0,
        rate_shape=2.0,
        dropout=0.45,
        dropout_concentration=6.0,
        acquisition="decline",
        value_log_mean=4.3,
        value_log_sd=0.6,
        max_orders_per_customer=60,
    ),
}


def _first_purchase(rng: np.random.Generator, n: int, acquisition: str) -> np.ndarray:
    """First purchase times in [0, 1) of the history."""
    u = rng.random(n)
    if acquisition == "growth":  # density grows linearly (x3): inverse CDF of (t+t^2)/2
        return (-1.0 + np.sqrt(1.0 + 8.0 * u)) / 2.0
    return 1.0 - np.sqrt(1.0 - u)  # density falls linearly to zero: most customers came early


def _process_times(rng: np.random.Generator, n: int, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Orders per customer and their purchase times (seconds since START), buy-till-you-die."""
    first = _first_purchase(rng, n, shape.acquisition) * shape.days
    rate = rng.gamma(shape.rate_shape, 1.0 / (shape.rate_shape * shape.gap_days), size=n)  # per day
    a = shape.dropout * shape.dropout_concentration
    p = rng.beta(a, shape.dropout_concentration - a, size=n)
    alive = np.minimum(rng.geometric(np.clip(p, 1e-6, 1.0)), shape.max_orders_per_customer)
    owner = np.repeat(np.arange(n), alive)
    starts = np.cumsum(alive) - alive
    gaps = rng.exponential(1.0, size=len(owner)) / rate[owner]
    gaps[starts] = 0.0
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[starts], alive)
    t = first[owner] + cum
    inside = t < shape.days
    k = np.bincount(owner[inside], minlength=n).astype(np.int64)
    return k, (t[inside] * 86400).astype(np.int64)


def _chunk(
    rng: np.random.Generator,
    n_customers: int,
    max_orders: int,
    shape: Shape = SHAPES["marketplace"],
    items: tuple[np.random.Generator, pa.Table] | None = None,
    layout: str = "olist",
) -> tuple[dict[str, pa.Table], int]:
    """One chunk of the shop: its tables and how many orders it generated (delivered or not)."""
    if shape.name == "marketplace":
        k, seconds = _purchase_times(rng, _orders_per_customer(rng, n_customers))
    else:
        k, seconds = _process_times(rng, n_customers, shape)
    total = np.cumsum(k)
    if total[-1] > max_orders:  # trim the last chunk to the exact order count
        keep = int(np.searchsorted(total, max_orders, side="left")) + 1
        k = k[:keep]
        k[-1] -= int(total[keep - 1] - max_orders)
    seconds = seconds[: int(k.sum())]
    k = k[k > 0]
    n_orders = int(k.sum())
    n_people = len(k)

    person_ids = _hex_ids(rng, n_people)
    owner = np.repeat(np.arange(n_people), k)
    purchase = np.datetime64(START, "s") + seconds.astype("timedelta64[s]")
    taste = rng.lognormal(0.0, 0.35, size=n_people)[owner]
    value = np.maximum(np.round(rng.lognormal(shape.value_log_mean, shape.value_log_sd, size=n_orders) * taste, 2), 5.0)

    status = np.full(n_orders, "delivered", dtype=object)
    undelivered = rng.random(n_orders) < NOT_DELIVERED_SHARE
    status[undelivered] = rng.choice(OTHER_STATUSES, size=int(undelivered.sum()))

    order_ids = _hex_ids(rng, n_orders)
    if layout == "transactions":  # what follows draws only the Olist files' own columns
        delivered = pa.array(~undelivered)
        return {
            "transactions": pa.table(
                {
                    "customer_id": person_ids.take(pa.array(owner)),
                    "order_id": order_ids,
                    "ordered_at": pa.array(purchase, type=pa.timestamp("s")),
                    "amount": pa.array(value),
                }
            ).filter(delivered)
        }, n_orders
    customer_ids = _hex_ids(rng, n_orders)

    # Payments: most orders one row; some split in 2-4 rows summing to the order value.
    rows = np.ones(n_orders, dtype=np.int64)
    split = rng.random(n_orders) < SPLIT_PAYMENT_SHARE
    rows[split] = rng.integers(2, 5, size=int(split.sum()))
    rows[rng.random(n_orders) < NO_PAYMENT_SHARE] = 0
    pay_order = np.repeat(np.arange(n_orders), rows)
    starts = np.cumsum(rows) - rows
    seq = np.arange(len(pay_order)) - np.repeat(starts, rows) + 1
    weights = rng.random(len(pay_order)) + 0.2
    wsum = np.bincount(pay_order, weights, minlength=n_orders)
    cents = np.round(value * 100).astype(np.int64)
    part = np.floor(weights / wsum[pay_order] * cents[pay_order]).astype(np.int64)
    last_row = starts + rows - 1
    has_rows = rows > 0
    part_sum = np.bincount(pay_order, part, minlength=n_orders).astype(np.int64)
    part[last_row[has_rows]] += (cents - part_sum)[has_rows]
    ptype = rng.choice(PAYMENT_TYPES, size=len(pay_order), p=PAYMENT_TYPE_P)
    ptype[(seq > 1) & (rng.random(len(pay_order)) < 0.7)] = "voucher"
    installments = np.where(ptype == "credit_card", rng.integers(1, 11, size=len(pay_order)), 1)

    extra = {}
    if items is not None:  # from their own random stream: the orders above stay as they were
        items_rng, products = items
        extra["items"] = _items(items_rng, products, order_ids, owner, k, taste, value)
    return {
        **extra,
        "orders": pa.table(
            {
                "order_id": order_ids,
                "customer_id": customer_ids,
                "order_status": pa.array(status, type=pa.string()),
                "order_purchase_timestamp": pa.array(purchase, type=pa.timestamp("s")),
            }
        ),
        "payments": pa.table(
            {
                "order_id": order_ids.take(pa.array(pay_order)),
                "payment_sequential": pa.array(seq),
                "payment_type": pa.array(ptype, type=pa.string()),
                "payment_installments": pa.array(installments),
                "payment_value": pa.array(part / 100.0),
            }
        ),
        "customers": pa.table(
            {
                "customer_id": customer_ids,
                "customer_unique_id": person_ids.take(pa.array(owner)),
                "customer_state": pa.array(rng.choice(STATES, size=n_people, p=STATE_P)[owner], type=pa.string()),
            }
        ),
    }, n_orders


FILES = {**OLIST_FILES, **OLIST_PERSONA_TABLES}


def write_sample(
    out: str | os.PathLike,
    orders: int = 100_000,
    seed: int = 42,
    progress: Callable[[int, int], None] | None = None,
    shape: str = "marketplace",
    layout: str = "olist",
) -> Path:
    """Write ``orders`` orders of a shop of ``shape`` into the folder ``out`` (created; files
    replaced): the Olist layout's CSV files, or with ``layout="transactions"`` one Parquet file of
    the delivered orders (``TRANSACTIONS_FILE``, columns ``TRANSACTIONS_COLUMNS``)."""
    if not 1 <= orders <= MAX_ORDERS:
        raise InputError(f"--orders must be between 1 and {MAX_ORDERS:,}; got {orders:,}")
    if shape not in SHAPES:
        raise InputError(f"--shape must be one of {', '.join(SHAPES)}; got '{shape}'")
    if layout not in LAYOUTS:
        raise InputError(f"--layout must be one of {', '.join(LAYOUTS)}; got '{layout}'")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; --out names the folder to write the files into")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=out))
    try:
        if layout == "transactions":
            _write_transactions(tmp, _chunks(orders, seed, SHAPES[shape], None, layout), orders, progress)
            os.replace(tmp / TRANSACTIONS_FILE, out / TRANSACTIONS_FILE)
        else:
            _write_olist(tmp, out, orders, seed, SHAPES[shape], progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _chunks(
    orders: int, seed: int, spec: Shape, products: pa.Table | None, layout: str
) -> Iterator[tuple[dict[str, pa.Table], int]]:
    """The shop's tables chunk by chunk, with how many orders each generated (delivered or not),
    ``orders`` in all. Each chunk has its own random streams, the items theirs, so the orders do
    not depend on the layout."""
    written = 0
    seeds = np.random.SeedSequence(seed)
    while written < orders:
        child = seeds.spawn(1)[0]
        rng = np.random.default_rng(child)
        items = None if products is None else (np.random.default_rng(child.spawn(1)[0]), products)
        tables, n = _chunk(rng, spec.customers_per_chunk, orders - written, spec, items, layout)
        written += n
        yield tables, n


def _write_transactions(
    tmp: Path,
    chunks: Iterator[tuple[dict[str, pa.Table], int]],
    orders: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    writer: pq.ParquetWriter | None = None
    generated = 0
    try:
        for tables, n in chunks:
            table = tables["transactions"]
            if writer is None:
                writer = pq.ParquetWriter(tmp / TRANSACTIONS_FILE, table.schema, compression="zstd")
            writer.write_table(table)
            generated += n
            if progress:
                progress(generated, orders)
    finally:
        if writer is not None:
            writer.close()


def _write_olist(
    tmp: Path, out: Path, orders: int, seed: int, spec: Shape, progress: Callable[[int, int], None] | None
) -> None:
    writers: dict[str, pacsv.CSVWriter] = {}
    fixed = catalogue(seed)
    written = 0
    for tables, n in _chunks(orders, seed, spec, fixed["products"], "olist"):
        for key, table in tables.items():
            if key not in writers:
                writers[key] = pacsv.CSVWriter(tmp / f"{FILES[key]}.csv", table.schema)
            writers[key].write_table(table)
        written += n
        if progress:
            progress(written, orders)
    for w in writers.values():
        w.close()
    pacsv.write_csv(fixed["products"], tmp / f"{FILES['products']}.csv")
    with open(tmp / f"{FILES['translation']}.csv", "wb") as fh:  # with a UTF-8 BOM, as Olist's own file
        fh.write(b"\xef\xbb\xbf")
        pacsv.write_csv(fixed["translation"], fh)
    for key in FILES:
        name = f"{FILES[key]}.csv"
        gz = out / f"{name}.gz"
        if gz.exists():  # a stale gzipped copy would shadow nothing but confuse people
            gz.unlink()
        os.replace(tmp / name, out / name)


def default_sample_folder(root: Path, orders: int = 100_000, seed: int = 42) -> Path:
    """Where the embedded default data set lives under ``root`` (whether it was made yet or not)."""
    return root / f"sample-{orders}-seed{seed}"


def ensure_default_sample(root: Path, orders: int = 100_000, seed: int = 42) -> Path:
    """The embedded default data set: generated once under ``root`` and reused."""
    folder = default_sample_folder(root, orders, seed)
    marker = folder / ".complete"
    if not marker.exists():
        write_sample(folder, orders=orders, seed=seed)
        marker.write_text(f"orders={orders} seed={seed}\n")
    return folder
