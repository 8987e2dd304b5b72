"""Training: source → RFM → shop terms → model → named segments → a saved, verified version."""

from __future__ import annotations

import contextlib
import datetime as dt
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from segmentation import runtime
from segmentation.data.kinds import RFMTable, Source
from segmentation.data.sources import opened
from segmentation.errors import DataError, ModelNotFoundError, SegmentationError
from segmentation.model import outlook as outlook_mod
from segmentation.model import playbook as playbook_mod
from segmentation.model.atrisk import AtRiskRule, expected_value, summarise
from segmentation.model.chance import ChanceModel
from segmentation.model.estimator import (
    DEFAULT_K,
    FIT_SAMPLE,
    MAX_K,
    MIN_K,
    RANDOM_STATE,
    SegmentModel,
    kinds_of,
)
from segmentation.model.geometry import feature_columns, rows_of, silhouette, silhouette_rows
from segmentation.model.naming import changes
from segmentation.model.outlook import Future, TierFutures, future_of
from segmentation.model.personas import Persona
from segmentation.model.segments import (
    ModelInfo,
    TrainedModel,
)
from segmentation.model.terms import Band, ShopTerms, measure
from segmentation.serving import staging
from segmentation.serving.describe import _segments, rule_based_comparison
from segmentation.serving.store import SCHEMA_VERSION, ModelStore

Progress = Callable[[str], None]


@dataclass
class Timer:
    progress: Progress | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, key: str, label: str) -> Iterator[None]:
        if self.progress:
            self.progress(f"{label}…")
        t = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - t, 3)


def _library_versions() -> dict[str, str]:
    import duckdb
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "duckdb": duckdb.__version__,
    }


def fit(
    table: RFMTable,
    *,
    k: int = DEFAULT_K,
    seed: int = RANDOM_STATE,
    trained_by: str = "cli",
    data_ref: str | None = None,
    data_spec: str | None = None,
    previous: tuple[str, TrainedModel] | None = None,
    timer: Timer | None = None,
    book: playbook_mod.Playbook | None = None,
    sample: int | None = FIT_SAMPLE,
    outlook: outlook_mod.Outlook | None = None,
    threads: int | None = None,
) -> tuple[TrainedModel, pd.DataFrame]:
    """Fit, name and summarise. Returns the trained model and the per-customer assignments
    (the RFM frame with ``cluster``, ``at_risk`` and ``chance``). ``outlook`` (the windows of
    the history and the chance model learned on them) is read from the table's source when not
    given; refits of one table (``validate``) share it."""
    timer = timer or Timer()
    rfm = table.frame
    if not MIN_K <= k <= MAX_K:
        raise DataError(f"--k must be between {MIN_K} and {MAX_K}; got {k}")
    book = book or playbook_mod.load()
    terms = measure(rfm, table.gaps, table.currency, table.idle_days)
    if outlook is None:
        with timer.step("chance", "Learning who buys again from earlier cut-offs of the history"):
            outlook = outlook_mod.learn(table, terms)
    chance_model = outlook.chance
    r, o, m, g = (rfm[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap"))
    if chance_model is not None:
        now, then = chance_model.now(r, o, m, g), chance_model.right_after(r, o, m, g)
    else:
        now = then = np.full(len(rfm), np.nan)
    if chance_model is not None and outlook.windows is not None:
        one_lost, repeat_lost = outlook_mod.lost_cutoffs(terms, outlook.windows)
        terms = replace(terms, one_time_lost_after=one_lost, repeat_lost_after=repeat_lost)
    rule = with_floor(book.at_risk, terms, r, o, now)
    flags = rule.flags(terms, r, o, m, now, then)
    del then  # 8 bytes a customer, not needed past the flags
    on = f" (fitted on a stratified sample of {sample:,})" if sample is not None and len(rfm) > sample else ""
    with timer.step("fit", f"Clustering {len(rfm):,} customers into {k} segments within their recency bands{on}"):
        model = SegmentModel(
            n_clusters=k,
            cutoffs=(terms.return_time, terms.return_window, terms.lost_after),
            random_state=seed,
            max_fit=sample,
            n_threads=threads or runtime.current().threads or 1,
            lost=(terms.one_time_lost, terms.repeat_lost),
        )
        try:  # the frame's own columns, read a block at a time: no float copy of every customer
            model.fit(rfm, kinds=kinds_of(o, flags), target=None if chance_model is None else now)
        except ValueError as exc:
            hint = "use more data or a smaller --k" if k > MIN_K else "there is too little variety to segment"
            raise DataError(f"{table.source}: {exc}; {hint}") from None
        labels = model.labels_
    rows = silhouette_rows(len(rfm))
    sampled_z = model.transform(rows_of(feature_columns(rfm), rows))
    with timer.step("silhouette", "Measuring cluster separation (silhouette on a sample)"):
        sil = silhouette(sampled_z, labels[rows])
    with timer.step("naming", "Naming segments from their definitions and comparing with the quantile rules"):
        band, freq, spend = terms.bands(r, o), terms.freqs(o), terms.spends(m)
        everything = _segments(model, rfm, labels, band, freq, spend, flags, terms, book)
        segments = [s for s in everything if not s.reserved]
        reserved = [s for s in everything if s.reserved]
        names = {s.cluster: s.name for s in everything}
        champion_clusters = np.array([s.base == "Champions" for s in sorted(everything, key=lambda s: s.cluster)])
        rule_based = rule_based_comparison(rfm, champion_clusters[labels])
        at_risk = summarise(
            flags,
            expected_value(now, m, o),
            m,
            labels,
            names,
            [s.cluster for s in everything],
            rule.text(terms, outlook.horizon if chance_model is not None else None),
            "",
            table.snapshot_date.isoformat(),
            outlook.horizon if chance_model is not None else None,
        )
        name_changes = None
        if previous is not None:
            version, before = previous
            name_changes = changes(
                version,
                [(s.name, model.transform(np.array([s.centroid]))[0]) for s in before.segments],
                [(s.name, model.cluster_centers_[s.cluster]) for s in segments],
            )
    with timer.step("futures", "Measuring what each segment's customers did next"):
        futures = None
        if chance_model is not None and outlook.windows is not None:
            per_cluster, futures = measured_futures(outlook, model, terms, rule, chance_model)
            segments = [replace(s, future=per_cluster.get(s.cluster)) for s in segments]
            reserved = [replace(s, future=per_cluster.get(s.cluster)) for s in reserved]
    info = ModelInfo(
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        trained_by=trained_by,
        source=table.source,
        data=data_ref,
        orders=table.orders,
        customers=table.customers,
        one_time_share=float((rfm["frequency"] == 1).mean()),
        excluded=dict(table.excluded),
        snapshot_date=table.snapshot_date.isoformat(),
        latest_purchase=table.latest_purchase.isoformat(),
        k=k,
        seed=seed,
        ranges={c: (float(rfm[c].min()), float(rfm[c].max())) for c in ("recency", "frequency", "monetary")},
        silhouette=sil,
        silhouette_sample=len(rows),
        library_versions=_library_versions(),
        schema_version=SCHEMA_VERSION,
        data_spec=data_spec,
    )
    trained = TrainedModel(
        model,
        terms,
        rule,
        tuple(segments),
        at_risk,
        rule_based,
        info,
        name_changes,
        reserved=tuple(reserved),
        chance=chance_model,
        futures=futures,
        horizon_note=outlook.note,
    )
    assignments = rfm.assign(cluster=labels, at_risk=flags, chance=now)
    return trained, assignments


def with_floor(
    rule: AtRiskRule, terms: ShopTerms, recency: np.ndarray, occasions: np.ndarray, chance: np.ndarray
) -> AtRiskRule:
    """The rule with the shop's numbers: each kind's floor, the chance only one in four lapsed
    one-time (or repeat) buyers reach (the lost band's when the lapsed band has fewer than
    ``outlook.MIN_GROUP``, all lapsed customers' when one kind has too few), and the ceiling, the
    chance three in four active customers reach. None where there is no chance or nobody."""
    band = terms.bands(recency, occasions)
    known = np.isfinite(chance)
    repeat = np.asarray(occasions) >= 2

    def average(*conditions: np.ndarray) -> float | None:
        for inside in conditions:
            inside = inside & known
            if inside.sum() >= outlook_mod.MIN_GROUP:
                return float(np.quantile(chance[inside], 0.75))
        return None

    lapsed, lost = band == Band.LAPSED, band == Band.LOST
    floor = average(lapsed & ~repeat, lapsed, lost & ~repeat, lost)
    floor_repeat = average(lapsed & repeat, lapsed, lost & repeat, lost)
    active = (band == Band.ACTIVE) & known
    ceiling = float(np.quantile(chance[active], 0.25)) if active.any() else None
    return replace(rule, floor=floor, floor_repeat=floor_repeat, ceiling=ceiling)


def measured_futures(
    outlook: outlook_mod.Outlook,
    model: SegmentModel,
    terms: ShopTerms,
    rule: AtRiskRule,
    chance_model: ChanceModel,
) -> tuple[dict[int, Future], TierFutures]:
    """Every customer as they were at each cut-off of the outlook's windows, scored by this model
    (their band, at-risk flag and segment as of then), and what each segment and tier did in the
    horizon after it."""
    rows = outlook.windows
    assert rows is not None
    r, o, m, g = (rows[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap"))
    ten = rows["tenure"].to_numpy(np.float64)
    now = chance_model.predict(r, o, m, ten, g)
    then = chance_model.predict(np.zeros(len(r)), o, m, ten - r, g)
    flags = rule.flags(terms, r, o, m, now, then)
    labels = model.predict(np.column_stack([r, o, m]).astype(np.float64), kinds_of(o, flags))
    returned = rows["returned"].to_numpy(bool)
    spend = rows["later_spend"].to_numpy(np.float64)
    per_cluster = {  # segments nobody was in at those dates have no measured future
        int(c): future_of(returned[labels == c], spend[labels == c])
        for c in range(len(model.cluster_centers_))
        if (labels == c).any()
    }
    band = terms.bands(r, o)

    def tier(b: Band) -> Future:
        inside = (band == b) & ~flags
        return future_of(returned[inside], spend[inside])

    tiers = TierFutures(
        horizon=outlook.horizon,
        cutoffs=outlook.cutoffs,
        active=tier(Band.ACTIVE),
        at_risk=future_of(returned[flags], spend[flags]),
        lapsing=tier(Band.LAPSING),
        lapsed=tier(Band.LAPSED),
        lost=future_of(returned[band == Band.LOST], spend[band == Band.LOST]),
        everyone=future_of(returned, spend),
    )
    return per_cluster, tiers


def train(
    source: Source,
    store: ModelStore,
    *,
    k: int = DEFAULT_K,
    seed: int = RANDOM_STATE,
    as_of: dt.date | None = None,
    trained_by: str = "cli",
    data_ref: str | None = None,
    data_spec: str | None = None,
    progress: Progress | None = None,
    sample: int | None = FIT_SAMPLE,
    threads: int | None = None,
) -> tuple[str, TrainedModel]:
    """Train on ``source`` and save a new current version. Returns (version, trained model).
    ``threads``: KMeans's threads (default: the runtime's, ``SEGMENT_THREADS``, else 1)."""
    timer = Timer(progress)
    with contextlib.ExitStack() as keep, opened(source, as_of, personas=True) as src:
        # the customer ids wait in a file until every customer's row is written: training never
        # holds them (9.3M customers: 335 MB less through the chance, the fit and the naming)
        ids_path, _ = keep.enter_context(staging.scratch(store.models, ".ids.arrow"))
        with timer.step("read_rfm", f"Reading {source.describe()} and computing RFM"):
            table = src.rfm(ids_to=ids_path)
        try:
            previous = store.load()
        except (ModelNotFoundError, SegmentationError):
            previous = None  # none yet, or damaged: nothing to compare names with
        if previous is not None and previous[1].info.source != table.source:
            previous = None  # other data: its names say nothing of these customers
        trained, assignments = fit(
            table,
            k=k,
            seed=seed,
            trained_by=trained_by,
            data_ref=data_ref,
            data_spec=data_spec,
            previous=previous,
            timer=timer,
            sample=sample,
            threads=threads,
        )
        snapshot, ids = table.snapshot_date, table.ids
        del table  # every customer's row is in the assignments now
        with timer.step("table", "Writing every customer's segment"):
            staged = keep.enter_context(store.staged(assignments, ids))
        ids_path.unlink(missing_ok=True)  # written into the table
        # written: the rows leave memory before the engine counts the personas (3M Olist-layout
        # orders: the training's peak, which was in the personas, 1.65 -> 1.29 GB)
        del assignments
        with timer.step("personas", "Describing what each segment buys and how it pays"):
            trained = with_personas(trained, src.personas(trained, snapshot, staged.path))
        src.close()  # the engine's memory handed back before the save
        with timer.step("save", "Saving the model"):
            trained = replace(trained, info=replace(trained.info, timings=dict(timer.timings)))
            version = store.save(trained, staged)
    trained = replace(trained, info=replace(trained.info, timings=dict(timer.timings)))
    return version, trained


def with_personas(trained: TrainedModel, personas: dict[int, Persona]) -> TrainedModel:
    """The trained model with each segment's persona (segments without one keep none)."""
    if not personas:
        return trained
    return replace(
        trained,
        segments=tuple(replace(s, persona=personas.get(s.cluster)) for s in trained.segments),
    )
