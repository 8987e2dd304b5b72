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
    count = part_count(source, first)
    if count > 1:
        try:
            with split(first, count) as plans:
                snapshot = as_of or _after_latest(plans)
                return _engine_score([_scored(p, snapshot, None, scoring) for p in plans], snapshot, source)
        finally:
            first.engine.close()
    if as_of is None:
        try:
            as_of = _after_latest([first])
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


def _after_latest(plans: list[_Plan]) -> dt.date:
    """The day after the latest valid order of the plans' orders (the snapshot of "now")."""
    days = []
    for plan in plans:
        (latest,) = plan.engine.one(
            rel.with_ctes([*plan.valid, rel.valid_days(_late(None)[0])], rel.LATEST_SELECT), plan.relation
        )
        if latest is not None:
            days.append(int(latest))
    if not days:
        raise DataError(f"{plans[0].engine.where}: no usable orders left after filtering")
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
    import pandas as pd
    import pyarrow as pa

    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    if not table.num_rows:
        raise DataError(f"{source.describe()}: no orders on or before {snapshot.isoformat()}")
    frame = table.to_pandas()
    frame = frame.astype(
        {
            "cluster": np.int64,
            "at_risk": np.int64,
            "customers": np.int64,
            "revenue": np.float64,
            "expected": np.float64,
            "last_day": np.int64,
        }
    )
    latest_day = rel.EPOCH + dt.timedelta(days=int(frame["last_day"].max()))
    tally = frame.groupby(["cluster", "at_risk"], as_index=False)[["customers", "revenue", "expected"]].sum()
    rows = frame[frame["at_risk"] == 1]
    rows = pd.DataFrame(
        {
            "customer_id": rows["risky_id"].astype(str).to_numpy(),
            "recency": rows["recency"].astype(np.int64).to_numpy(),
            "frequency": rows["frequency"].astype(np.int64).to_numpy(),
            "monetary": rows["revenue"].to_numpy(),  # a group of one: that customer's spend
            "occasions": rows["occasions"].astype(np.int64).to_numpy(),
            "gap": pd.to_numeric(rows["gap"]).astype(np.float64).to_numpy(),
            "cluster": rows["cluster"].to_numpy(),
            "chance": pd.to_numeric(rows["chance"]).astype(np.float64).to_numpy(),
        }
    )
    rows = rows.sort_values("customer_id", kind="stable", ignore_index=True)
    return EngineScore(snapshot, latest_day, tally, rows)
