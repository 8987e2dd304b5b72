"""Every customer of a source scored inside its engine: only totals and the at-risk rows come back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segmentation.data import relations as rel
from segmentation.data.kinds import Source
from segmentation.data.parts import part_count, split
from segmentation.data.plan import _Plan, _plan
from segmentation.data.sources import _late
from segmentation.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class EngineScore:
    """Every customer of a source scored inside its engine: only totals and the at-risk rows came back."""

    snapshot_date: dt.date
    latest_purchase: dt.date
    tally: pd.DataFrame  # cluster, at_risk, customers, revenue, expected (chance x typical spend)
    at_risk_rows: pd.DataFrame  # customer_id, recency, frequency, monetary, occasions, gap, cluster, chance


def score_in_engine(source: Source, as_of: dt.date | None, scoring: list[tuple[str, str]]) -> EngineScore:
    """Score every customer of ``source`` as of ``as_of`` with a compiled model (``compiled.scored_ctes``).

    One statement per session, from the valid orders to the totals (``relations.SCORED_TOTALS_SELECT``):
    the engine stores nothing. A database that runs one statement on one core (PostgreSQL's
    aggregation after its parallel scan, MySQL) is asked on several connections at once, each
    for its own share of the customers by a hash of their id (``SEGMENT_DB_SESSIONS``, default 2).
    """
    first = _plan(source)
    try:
        count = part_count(source, first)
    except BaseException:
        first.engine.close()
        raise
    if count > 1:
        try:
            with split(first, count) as plans:
                snapshot = as_of or _after_latest(plans, first.engine.where)
                tables = [_scored(p, snapshot, None, scoring) for p in plans]
        finally:
            first.engine.close()  # its memory handed back before the rows become frames
        return _engine_score(tables, snapshot, source)
    if as_of is None:
        try:
            as_of = _after_latest([first], first.engine.where)
        except BaseException:
            first.engine.close()
            raise
    snapshot = as_of

    def share(bucket: int, buckets: int, plan: _Plan | None = None) -> pa.Table:
        plan = plan or _plan(source)
        try:
            plan.engine.prepare_scoring(buckets)
            cond = plan.engine.bucket("customer_id", buckets, bucket) if buckets > 1 else None
            return _scored(plan, snapshot, cond, scoring)
        finally:
            plan.engine.close()

    buckets = first.engine.sessions()
    if buckets == 1:
        parts = [share(0, 1, first)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(buckets - 1) as pool:
            others = [pool.submit(share, b, buckets) for b in range(1, buckets)]
            mine = _settle(lambda: share(0, buckets, first))
            results = [mine, *(_settle(f.result) for f in others)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        parts = [r for r in results if not isinstance(r, BaseException)]
    return _engine_score(parts, snapshot, source)


def _after_latest(plans: list[_Plan], where: str) -> dt.date:
    """The day after the latest valid order of the plans' orders (the snapshot of "now")."""
    days = []
    for plan in plans:
        (latest,) = plan.engine.one(
            rel.with_ctes([*plan.valid, rel.valid_days(_late(None)[0])], rel.LATEST_SELECT), plan.relation
        )
        if latest is not None:
            days.append(int(latest))
    if not days:
        raise DataError(f"{where}: no usable orders left after filtering")
    return rel.EPOCH + dt.timedelta(days=max(days) + 1)


def _scored(plan: _Plan, snapshot: dt.date, cond: str | None, scoring: list[tuple[str, str]]) -> pa.Table:
    """The totals and at-risk rows of the plan's customers (those ``cond`` keeps) as of ``snapshot``."""
    ctes = [*plan.valid, rel.valid_days(snapshot, cond), rel.PER_DAY, rel.customers(snapshot), *scoring]
    try:
        return plan.engine.table(rel.with_ctes(ctes, rel.SCORED_TOTALS_SELECT), plan.relation)
    except DataError:
        if plan.diagnose is not None:
            plan.diagnose()
        raise


def _settle(fn: Callable[[], pa.Table]) -> pa.Table | BaseException:
    try:
        return fn()
    except Exception as exc:
        return exc


def _engine_score(parts: list[pa.Table], snapshot: dt.date, source: Source) -> EngineScore:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not sum(t.num_rows for t in parts):  # no rows, or no parts at all
        raise DataError(f"{source.describe()}: no orders on or before {snapshot.isoformat()}")
    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    # totals and one row per customer at risk (1.1M of 93M customers): summed, cast and sorted in
    # Arrow, never the whole table as Python objects (0.7 GB at 1.1M rows that way)
    sums = [("customers", "sum"), ("revenue", "sum"), ("expected", "sum")]
    tally = (
        table.group_by(["cluster", "at_risk"])
        .aggregate(sums)
        .sort_by([("cluster", "ascending"), ("at_risk", "ascending")])
    )
    tally = tally.rename_columns(["cluster", "at_risk", "customers", "revenue", "expected"])
    tally = tally.to_pandas().astype(
        {"cluster": np.int64, "at_risk": np.int64, "customers": np.int64, "revenue": np.float64, "expected": np.float64}
    )
    latest_day = rel.EPOCH + dt.timedelta(days=int(pc.max(table["last_day"]).as_py()))
    at_risk = int(pc.sum(pc.equal(table["at_risk"], 1)).as_py() or 0)
    order = pc.sort_indices(table, sort_keys=[("at_risk", "descending"), ("risky_id", "ascending")])[:at_risk]
    risky = table.select(["risky_id", "recency", "frequency", "revenue", "occasions", "gap", "cluster", "chance"])
    risky = risky.take(order)  # one copy of the at-risk rows, sorted by id
    types = {
        "recency": pa.int64(),
        "frequency": pa.int64(),
        "revenue": pa.float64(),  # a group of one: that customer's spend
        "occasions": pa.int64(),
        "gap": pa.float64(),
        "cluster": pa.int64(),
        "chance": pa.float64(),
    }
    columns = {"customer_id": pc.cast(risky["risky_id"], pa.string())}
    columns.update({"monetary" if c == "revenue" else c: pc.cast(risky[c], t) for c, t in types.items()})
    rows = pa.table(columns).to_pandas()
    return EngineScore(snapshot, latest_day, tally, rows)
