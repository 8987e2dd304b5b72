"""Where order history comes from: files (Olist folder, a transactions CSV/Parquet), a database
(PostgreSQL, MySQL/MariaDB, or a warehouse with a SQLAlchemy driver) or Spark; and ``load_rfm``,
which runs the one RFM definition (``relations``) inside that engine and brings back only
per-customer rows. DuckDB reads files, streaming them and spilling to disk, so memory stays
bounded by the number of customers, not of orders.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from segmentation.data import olist_sql
from segmentation.data import relations as rel
from segmentation.data.engines import Engine
from segmentation.data.frames import check_staged, window_frame
from segmentation.data.kinds import _REASON_ORDER, RFMTable, Source
from segmentation.data.plan import _diagnosed, _diagnosed_open, _Plan, _plan
from segmentation.data.rfm_rows import Fetched, Rows, net_rows, rfm_table
from segmentation.errors import DataError, EngineMemoryError
from segmentation.model import personas as persona_mod
from segmentation.model.compiled import scored_ctes
from segmentation.model.survival import FirstReturns

if TYPE_CHECKING:
    import pandas as pd

FETCH_SHARE = 0.5  # of DuckDB's memory limit, while the per-customer rows are handed over
PERSONAS_SHARE = 0.6  # of DuckDB's memory limit, for the personas
T = TypeVar("T")


def load_rfm(source: Source, as_of: dt.date | None = None) -> RFMTable:
    """Aggregate a source into per-customer RFM inside its engine (see ``relations``: the
    per-day table materialised once, or the three reads asked directly on two connections). The
    engine is closed (its memory freed) before the per-customer rows become a frame; the
    table's ``history`` reopens the source when the windows are asked for."""
    with opened(source, as_of) as src:
        fetched = src.fetch()
    table = rfm_table(fetched, as_of, src.where, source.describe(), source.currency, source)
    table.history = Reopened(source)
    return table


@contextlib.contextmanager
def opened(
    source: Source, as_of: dt.date | None = None, personas: bool = False, keep: bool = True
) -> Iterator[OpenSource]:
    """The source opened in its engine for a training pass: ``rfm()``, the windows of its
    history (``windows``), then (with ``personas``) ``personas(trained)`` from the same pass
    where the engine keeps it; always closed after. ``keep=False`` closes the engine as soon as
    the per-customer rows are read (the windows then reopen the source)."""
    src = OpenSource(source, as_of, personas, keep)
    try:
        yield src
    finally:
        src.close()


class Reopened:
    """A source's history read on a fresh connection (after its training pass was closed)."""

    def __init__(self, source: Source):
        self.source = source

    def windows(self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1) -> pd.DataFrame | None:
        plan = _plan(self.source)
        with _diagnosed(plan) as engine:
            sample = engine.bucket("customer_id", buckets, 0) if buckets > 1 else None
            if buckets > 1 and sample is None:
                return None  # too many to read whole, and no hash to sample them by here
            ctes = [*plan.valid, rel.valid_days(until), rel.PER_DAY]
            table = engine.table(rel.with_ctes(ctes, rel.windows_select(cutoffs, horizon, sample)), plan.relation)
        return window_frame(table)


class OpenSource:
    """One training pass over a source (``opened``)."""

    def __init__(self, source: Source, as_of: dt.date | None, personas: bool, keep: bool = True):
        self.source, self.as_of = source, as_of
        self.want_personas = personas
        self.keep = keep
        self._plan: _Plan | None = None  # opened by the first read
        self.closed = False
        self.daily = False  # the per-day table is materialised in the open engine
        self.where, self.direct, self.keep_orders = source.describe(), False, False

    @property
    def plan(self) -> _Plan:
        if self._plan is None:
            self._plan = _plan(self.source, keep_files=self.want_personas)
            self.where = self._plan.engine.where
            # a database answers each statement on several connections at once, unless the orders
            # are the Olist layout's join and may be kept: computed once, that is faster (3M
            # orders on PostgreSQL: 101 s for the training instead of 155; a plain orders table
            # keeps the connections: 69 s against 75 with a temporary table)
            self.direct = self._plan.engine.sessions() > 1 and not self._plan.joined
            # the orders are kept for the personas of an Olist layout read in one pass
            self.keep_orders = (
                self.want_personas and not self.direct and self._plan.persona is not None and self._plan.persona_orders
            )
        return self._plan

    def fetch(self, as_of: dt.date | None = None, ids_to: Path | None = None) -> Fetched:
        """What training needs as of ``as_of`` (default: the pass's own date). An earlier date
        is read from the same per-day table, with the later orders counted as after it.
        ``ids_to``: the customer ids set aside in that file (``rfm_rows.net_rows``)."""
        as_of = as_of if as_of is not None else self.as_of
        if self.as_of is not None and as_of is not None and as_of > self.as_of:
            raise DataError(f"{self.where}: this pass ends on {self.as_of.isoformat()}, not after")
        plan = self.plan
        if self.direct:
            if self.closed:
                plan = _plan(self.source)
            try:
                return _fetch_direct(self.source, plan, as_of, ids_to)
            finally:
                plan.engine.close()
                self.closed = True
        if self.closed:
            raise DataError(f"{self.where}: this pass is closed")
        with _diagnosed_open(plan) as engine:
            if not self.daily:
                ctes = orders_ctes(plan, self.as_of)
                if self.keep_orders:
                    engine.materialise(
                        "segment_classified", rel.with_ctes(ctes, "SELECT * FROM classified"), plan.relation
                    )
                    ctes, relation = [("classified", "SELECT * FROM segment_classified")], None
                else:
                    relation = plan.relation
                engine.materialise("segment_daily", rel.with_ctes(ctes, rel.DAILY_SELECT), relation)
                self.daily = True
            if as_of is not None and as_of != self.as_of:
                days = [rel.per_day_until(as_of), rel.excluded_until(as_of)]
            else:
                days = rel.MATERIALISED
            fetched = _fetch(engine, days, days, None, ids_to)
            engine.release()  # its tables wait in the spill folder while the frame is built
        if not self.keep and not (self.want_personas and self.plan.persona is not None):
            self.close()  # its memory back before the frame is built
        return fetched

    def rfm(self, as_of: dt.date | None = None, ids_to: Path | None = None) -> RFMTable:
        """The RFM table as of ``as_of``; with ``ids_to``, its ids wait in that file (``RFMTable.ids``)."""
        as_of = as_of if as_of is not None else self.as_of
        table = rfm_table(
            self.fetch(as_of, ids_to), as_of, self.where, self.source.describe(), self.source.currency, self.source
        )
        table.history = self
        return table

    def windows(self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1) -> pd.DataFrame | None:
        """Every customer as of each cut-off with what they did in the ``horizon`` days after it,
        reading no day after ``until`` (``relations.windows_select``); a share of the customers
        when ``buckets`` > 1 (None where the engine has no hash to choose it by)."""
        if buckets > 1 and self.plan.engine.bucket_of("customer_id", buckets) is None:
            return None  # too many to read whole, and no hash to sample them by here
        if self.closed or not self.daily:
            return Reopened(self.source).windows(cutoffs, horizon, until, buckets)
        with _diagnosed_open(self.plan) as engine:
            sample = engine.bucket("customer_id", buckets, 0) if buckets > 1 else None
            sql = rel.with_ctes([rel.per_day_until(until)], rel.windows_select(cutoffs, horizon, sample))
            engine.release(small=True)  # the per-day table read back through a small buffer
            frame = window_frame(engine.table(sql))
            engine.release()  # the fit and the naming come next: the per-day table waits on disk
            return frame

    def personas(self, trained, snapshot: dt.date, labels: Path | None = None) -> dict:
        """Every segment's persona (``personas``): in this pass's engine when it is still open
        (the per-day table, and the orders for an Olist layout, are there), else in one statement
        on a fresh connection, the customers scored by the compiled model (training's own labels:
        ``SegmentModel.labels_`` is the nearest centre). Where the engine reads it (DuckDB;
        PostgreSQL by COPY), ``labels`` (training's per-customer table, a Parquet file) gives
        the segments instead: 4.4 s less at 10M Olist-layout orders in DuckDB. Segments of more
        than ``personas.SAMPLE`` customers are described from a sample, by a hash of their ids."""

        if self.plan.persona is None:
            return {}
        head: list[tuple[str, str]] = []
        if not self.closed:  # the per-day table (and the orders) of this pass
            plan, orders = self.plan, rel.MATERIALISED_ORDERS
        else:
            plan, orders = _plan(self.source), rel.VALID_DAYS
            head = [*plan.valid, rel.valid_days(snapshot), rel.PER_DAY, rel.customers(snapshot)]
        sizes = {s.cluster: s.customers for s in trained.all_segments}
        keep = persona_mod.sampled_buckets(sizes)
        try:  # from here on the plan's connection is open: closed whatever happens
            # with part of the buffer pool: the process holds its libraries and the trained
            # model beside it (10M Olist-layout orders: 1.55 -> 1.16 GB, 5.8 -> 6.3 s)
            table = sharing(
                plan.engine, PERSONAS_SHARE, lambda: self._facets(plan, orders, head, trained, snapshot, labels, keep)
            )
        finally:
            plan.engine.close()
        if table is None:
            return {}
        rows = table.to_pydict()
        counted = [f == "members" for f in rows["facet"]]
        sampled = {int(c): int(k) for c, k, m in zip(rows["cluster"], rows["n"], counted) if m and c in keep}
        rows = {k: [v for v, m in zip(vs, counted) if not m] for k, vs in rows.items()}
        return persona_mod.summarise(
            rows["facet"], rows["cluster"], rows["label"], rows["amount"], rows["n"], sizes, sampled
        )

    def _facets(self, plan: _Plan, orders: str, head: list, trained, snapshot: dt.date, labels: Path | None, keep):
        """The persona facets' rows (``personas``) on ``plan``'s open connection, the segments
        with a bucket in ``keep`` sampled; None when the source has no facet to count."""

        bucket = plan.engine.bucket_of("customer_id", persona_mod.BUCKETS) if keep else None
        where = "" if bucket is None else f" WHERE {rel.sampled_members(bucket, keep, persona_mod.BUCKETS)}"
        scoring = [
            *scored_ctes(trained.model, trained.rule, trained.terms, trained.chance),
            ("members", f"SELECT customer_id, cluster FROM scored{where}"),
        ]
        if not self.closed:  # once: the facets read it several times
            if labels is None or not _staged_members(plan.engine, labels, where):
                with _diagnosed_open(plan) as engine:
                    engine.prepare_scoring()
                    members = rel.with_ctes(
                        [rel.MATERIALISED[0], rel.customers(snapshot), *scoring], "SELECT * FROM members"
                    )
                    engine.materialise("segment_members", members)
            scoring = [("members", "SELECT customer_id, cluster FROM segment_members")]
        select = rel.FACETS_SELECT + (f" UNION ALL {rel.MEMBER_COUNTS}" if where else "")
        with _diagnosed_open(plan) as engine:
            assert plan.persona is not None
            facets = plan.persona(snapshot, orders)
            if not facets:
                return None
            engine.prepare_scoring(few_groups=True)
            if plan.engine.dialect == "duckdb" and not head and facets[0][0] == olist_sql.BOUGHT_ORDERS:
                # the orders with their segment, read by several facets, kept as a table of
                # their own first: inside the statement they took the buffer pool beside the
                # joins' hash tables, and one training of 10M orders failed at the 1GB limit
                engine.materialise(
                    olist_sql.BOUGHT_ORDERS,
                    rel.with_ctes([*scoring, facets[0]], f"SELECT * FROM {olist_sql.BOUGHT_ORDERS}"),
                )
                facets = facets[1:]
            table = engine.table(rel.with_ctes([*head, *scoring, *facets], select), plan.relation)
        return table

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._plan is not None:
                self._plan.engine.close()


def _staged_members(engine: Engine, labels: Path, where: str) -> bool:
    """Training's segments, read from its per-customer table (a Parquet file) into the table
    ``segment_members`` where the engine can (False: it cannot); a damaged file is named as
    that file, the engine's own failures as the engine's."""
    check_staged(labels)
    relation = engine.staged_relation(labels)
    if relation is None:
        return False
    engine.materialise("segment_members", f"SELECT customer_id, cluster FROM {relation}{where}")
    return True


def _fetch_direct(source: Source, plan: _Plan, as_of: dt.date | None, ids_to: Path | None = None) -> Fetched:
    """The exclusions and the gaps on a second connection while this one reads R, F, M."""
    from concurrent.futures import ThreadPoolExecutor

    valid = [*plan.valid, rel.valid_days(_late(as_of)[0]), rel.PER_DAY]

    def counts() -> tuple[dict[str, int], FirstReturns]:
        other = _plan(source)
        with _diagnosed(other) as engine:
            engine.prepare_scoring(2)  # one core each: the two connections are the parallelism
            excluded = _excluded(engine, [*orders_ctes(other, as_of), rel.DIRECT_EXCLUDED], other.relation)
            return excluded, _gaps(engine, [*other.valid, rel.valid_days(_late(as_of)[0]), rel.PER_DAY], other.relation)

    with ThreadPoolExecutor(1) as pool:
        side = pool.submit(counts)
        with _diagnosed(plan) as engine:  # a failure here waits for the other connection to finish
            rows = net_rows(engine.batches(rel.with_ctes(valid, rel.RFM_SELECT), plan.relation), ids_to)
        excluded, gaps = side.result()
    return Fetched(excluded, gaps, rows)


def _late(as_of: dt.date | None) -> tuple[dt.date, str]:
    """The last day an order may have, and the reason for the later ones."""
    if as_of is None:  # a mistyped year must not become the snapshot date of every customer
        return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), "future_date"
    return as_of, "after_as_of"


def orders_ctes(plan: _Plan, as_of: dt.date | None) -> list[tuple[str, str]]:
    """The source's orders relation with every row classified (valid, or why not)."""
    return [*plan.ctes, rel.classified(*_late(as_of), plan.carried)]


def _fetch(
    engine: Engine,
    days: list[tuple[str, str]],
    excluded_rows: list[tuple[str, str]],
    relation: str | None,
    ids_to: Path | None = None,
) -> Fetched:
    """What training needs from the engine: the exclusions, the gaps, and a row per customer."""
    excluded = _excluded(engine, excluded_rows, relation)
    gaps = _gaps(engine, days, relation)
    return Fetched(excluded, gaps, _per_customer(engine, days, relation, ids_to))


def _per_customer(engine: Engine, days: list[tuple[str, str]], relation: str | None, ids_to: Path | None) -> Rows:
    """The rows of ``RFM_SELECT``, netted (``rfm_rows.net_rows``). In DuckDB the customers are
    grouped with the whole buffer pool and kept, then handed over sorted with ``FETCH_SHARE`` of
    it: the process holds their numbers meanwhile (10M Olist-layout orders: the read's peak
    1.65 -> 1.3 GB; sorting spills to disk, grouping tens of millions may not)."""
    if engine.dialect != "duckdb":  # a database's or Spark's memory is their own
        return net_rows(engine.batches(rel.with_ctes(days, rel.RFM_SELECT), relation), ids_to)
    engine.materialise(rel.RFM_KEPT, rel.with_ctes(days, rel.RFM_GROUPED), relation)
    engine.release()
    sorted_rows = f"SELECT * FROM {rel.RFM_KEPT} ORDER BY customer_id"
    try:
        return sharing(engine, FETCH_SHARE, lambda: net_rows(engine.batches(sorted_rows), ids_to))
    finally:
        with contextlib.suppress(DataError):  # a failure that got here is the one to say
            engine.one(f"DROP TABLE IF EXISTS {rel.RFM_KEPT}")  # handed over: nothing reads it again


def sharing(engine: Engine, share: float, work: Callable[[], T]) -> T:
    """``work()`` with the engine's memory limit lowered to ``share`` of itself, or with the
    whole limit again if that ran out of memory (the engine could not spill all of it)."""
    try:
        with engine.limited(share):
            return work()
    except EngineMemoryError:
        return work()


def _excluded(engine: Engine, ctes: list[tuple[str, str]], relation: str | None) -> dict[str, int]:
    dropped = engine.table(rel.with_ctes(ctes, rel.EXCLUDED_SELECT), relation).to_pydict()
    return {
        str(k): int(n)
        for k, n in sorted(
            zip(dropped["excluded"], dropped["n_rows"]), key=lambda kv: _REASON_ORDER.get(str(kv[0]), 99)
        )
        if n and int(n)
    }


def _gaps(engine: Engine, ctes: list[tuple[str, str]], relation: str | None) -> FirstReturns:
    histogram = engine.table(rel.with_ctes(ctes, rel.FIRST_RETURNS_SELECT), relation).to_pydict()
    return FirstReturns.of(histogram["gap"], histogram["n"])
