"""Out-of-time checks of what a model says about the future: ``segment backtest``.

For each cut-off day, a model is trained as of it with the served settings (its own terms, chance
model, at-risk rule and segments, from the orders up to and including that day, nothing later),
then the orders of the following ``horizon`` days, which it never saw, are read from the source
and compared with what it said:

- per segment: how many customers, the share who bought again (with a 95% interval) and their
  revenue per customer in the horizon;
- the at-risk flag against everyone else and against the active, lapsing, lapsed and lost tiers;
- how well each score ranks who buys again (AUC): the segments (each customer scored by their
  segment's measured future, stored at training), the recency bands and kinds alone, a recency
  grid with as many groups as segments, recency x purchase days, BG/NBD's expected purchases
  (fitted on the same history; a reference) and the chance to buy again. The group scores take
  their rates from the window a horizon before the cut-off, as the segments do: every score is
  out of time;
- the calibration of the chance (deciles of predicted against observed, the expected calibration
  error) and its Brier score against the base rate (the share who bought again, known only in
  hindsight) and against BG/NBD's probability of a purchase.

Cut-offs default to three, a return window apart (the return window of all the data: it only
spaces the dates), the last a return window before the data's end. Each model looks ahead its own
horizon, as it would be served: ``segment train --as-of`` the cut-off trains the same model.
``--horizon`` sets one horizon for every cut-off instead (the chance is then learned for it).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from segmentation.analysis import palive
from segmentation.analysis.ranking import Calibration, auc, auc_difference, calibration
from segmentation.analysis.validate import FutureCheck, future_checks
from segmentation.data.kinds import Source
from segmentation.data.sources import opened
from segmentation.errors import DataError, InputError
from segmentation.model import outlook as outlook_mod
from segmentation.model.estimator import DEFAULT_K, RANDOM_STATE, kinds_of
from segmentation.model.outlook import Future, TierFutures, future_of
from segmentation.model.segments import TrainedModel
from segmentation.model.terms import Band, measure
from segmentation.serving.training import fit

DEFAULT_CUTOFFS = 3


@dataclass(frozen=True)
class SegmentOutcome:
    name: str
    base: str
    customers: int
    future: Future  # what they did in the horizon after the cut-off
    claimed: Future | None  # what its customers did at earlier dates, measured at training


@dataclass(frozen=True)
class CutoffResult:
    cutoff: dt.date
    horizon: int
    customers: int
    returned: int
    model_k: int
    terms: tuple[int, int, int]
    segments: tuple[SegmentOutcome, ...]
    tiers: TierFutures  # disjoint: at risk taken out of its band
    flagged: Future
    not_flagged: Future
    auc: dict[str, float | None]
    chance_vs: dict[str, tuple[float, float, float] | None]  # AUC(chance) - AUC(score), 95% interval
    calibration: Calibration | None
    claims: tuple[FutureCheck, ...]  # what the names claim, checked on what followed the cut-off
    rule_cells: int  # segments that are a whole stratum (no KMeans split)
    kmeans_segments: int  # segments that split a stratum
    seconds: float

    @property
    def base_rate(self) -> float:
        return self.returned / self.customers if self.customers else 0.0

    @property
    def failed(self) -> list[FutureCheck]:
        """Claims the future contradicted beyond chance (the 95% intervals apart)."""
        return [c for c in self.claims if c.passed is False and c.clear is not False]

    @property
    def unsettled(self) -> list[FutureCheck]:
        """Claims that went the wrong way, but within chance (the intervals overlap)."""
        return [c for c in self.claims if c.passed is False and c.clear is False]


@dataclass(frozen=True)
class Backtest:
    source: str
    horizon: int | None  # one horizon for every cut-off (--horizon); None: each model's own
    horizon_reason: str
    results: tuple[CutoffResult, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[tuple[dt.date, FutureCheck]]:
        return [(r.cutoff, c) for r in self.results for c in r.failed]

    @property
    def unsettled(self) -> list[tuple[dt.date, FutureCheck]]:
        return [(r.cutoff, c) for r in self.results for c in r.unsettled]

    def mean_auc(self) -> dict[str, float | None]:
        keys = list(self.results[0].auc) if self.results else []
        out: dict[str, float | None] = {}
        for k in keys:
            vals = [r.auc[k] for r in self.results if r.auc.get(k) is not None]
            out[k] = float(np.mean(vals)) if vals else None  # type: ignore[arg-type]
        return out


SCORES = {
    "recency": "recency alone (fewer days since the last order first)",
    "purchase_days_then_recency": "purchase days, then recency (more days first)",
    "segments": "segments (each scored by its measured future)",
    "bands": "recency bands and kinds alone (no KMeans splits)",
    "recency_grid": "recency grid with as many groups as segments",
    "recency_x_purchase_days": "recency x purchase days",
    "bgnbd": "BG/NBD expected purchases",
    "chance": "chance to buy again",
}


def default_cutoffs(last: dt.date, first: dt.date, horizon: int, n: int) -> tuple[list[dt.date], list[str]]:
    """``n`` cut-offs ``horizon`` days apart, the latest that long before ``last``; each needs as
    much and a week of history before it (for its own chance model)."""
    out, skipped = [], []
    for i in range(n):
        c = last - dt.timedelta(days=horizon * (i + 1))
        if (c - first).days < horizon + outlook_mod.MIN_HORIZON:
            skipped.append(
                f"{c.isoformat()}: less than {horizon + outlook_mod.MIN_HORIZON:,} days of history before it"
            )
            continue
        out.append(c)
    return out, skipped


def group_rates(keys_then: np.ndarray, y_then: np.ndarray, keys_now: np.ndarray) -> np.ndarray:
    """Each customer now scored by the rate their group had in the earlier window (the overall
    rate for a group that was empty then)."""
    frame = pd.DataFrame({"k": keys_then, "y": y_then.astype(np.float64)})
    rates = frame.groupby("k")["y"].mean()
    prior = float(y_then.mean()) if len(y_then) else 0.0
    return pd.Series(keys_now).map(rates).fillna(prior).to_numpy(np.float64)


def _grid(recency_then: np.ndarray, recency_now: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    edges: np.ndarray = np.zeros(0)
    if len(recency_then):
        edges = np.unique(np.quantile(recency_then, np.linspace(0, 1, groups + 1)[1:-1]))
    return np.searchsorted(edges, recency_then, side="right"), np.searchsorted(edges, recency_now, side="right")


def _bgnbd(frame: pd.DataFrame, horizon: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """BG/NBD fitted on this history: expected purchases and P(at least one) within ``horizon``."""
    model, why = palive.fit(frame, strict=False)
    if model is None:
        return None, None, why
    x, t_x, T = palive.history(frame)
    return model.expected(x, t_x, T, horizon), model.p_purchase(x, t_x, T, horizon), "fitted"


class TooLate(Exception):
    """The model's own horizon runs past the end of the data."""


class TooEarly(Exception):
    """Too little history before the cut-off to learn who comes back."""


def run_cutoff(
    src, cutoff: dt.date, horizon: int | None, *, k: int, seed: int, say: Callable[[str], None], last: dt.date
) -> tuple[CutoffResult, TrainedModel]:
    """Train as of ``cutoff`` (with ``horizon``, or the model's own) and judge it on what followed;
    raises TooLate when its horizon runs past ``last``."""
    t0 = time.perf_counter()
    say(f"Cut-off {cutoff.isoformat()}: training as of it")
    table = src.rfm(as_of=cutoff)
    terms = measure(table.frame, table.gaps, table.currency, table.idle_days)
    outlook = outlook_mod.learn(table, terms, horizon=horizon)
    horizon = outlook.horizon
    if outlook.chance is None:
        raise TooEarly(f"{cutoff.isoformat()}: too few days of history to learn from ({outlook.note})")
    if cutoff + dt.timedelta(days=horizon) > last:
        raise TooLate(
            f"{cutoff.isoformat()}: its model looks {horizon:,} days ahead, past the end of the data ({last.isoformat()})"
        )
    trained, assigned = fit(table, k=k, seed=seed, outlook=outlook, trained_by="backtest")
    say(f"Cut-off {cutoff.isoformat()}: reading the {horizon:,} days after it")
    later = src.windows([cutoff], horizon, cutoff + dt.timedelta(days=horizon))
    assert later is not None  # one bucket: never sampled
    later = later.set_index("customer_id")
    ids = assigned["customer_id"].astype(str)
    missing = ~ids.isin(later.index)
    if missing.any():  # every customer of the history is in its window: the same orders, read twice
        raise DataError(f"{src.where}: {int(missing.sum()):,} customers as of {cutoff} missing from its window")
    later = later.loc[ids.to_numpy()]
    y = later["returned"].to_numpy(bool)
    spend = later["later_spend"].to_numpy(np.float64)
    labels = assigned["cluster"].to_numpy()
    flags = assigned["at_risk"].to_numpy(bool)
    by = trained.by_cluster()
    segments = []
    for seg in trained.segments:
        inside = labels == seg.cluster
        segments.append(
            SegmentOutcome(seg.name, seg.base, int(inside.sum()), future_of(y[inside], spend[inside]), seg.future)
        )
    r = assigned["recency"].to_numpy()
    o = assigned["occasions"].to_numpy()
    band = trained.terms.bands(r, o)
    tiers = TierFutures(
        horizon=horizon,
        cutoffs=(cutoff,),
        active=future_of(y[(band == Band.ACTIVE) & ~flags], spend[(band == Band.ACTIVE) & ~flags]),
        at_risk=future_of(y[flags], spend[flags]),
        lapsing=future_of(y[(band == Band.LAPSING) & ~flags], spend[(band == Band.LAPSING) & ~flags]),
        lapsed=future_of(y[(band == Band.LAPSED) & ~flags], spend[(band == Band.LAPSED) & ~flags]),
        lost=future_of(y[band == Band.LOST], spend[band == Band.LOST]),
        everyone=future_of(y, spend),
    )
    scores: dict[str, np.ndarray | None] = dict.fromkeys(SCORES)
    scores["recency"] = -r.astype(np.float64)
    scores["purchase_days_then_recency"] = o.astype(np.float64) * 1e6 - r  # recency < a million days
    windows = outlook.windows
    if windows is not None and len(windows) and trained.chance is not None:
        wr, wo, wm, wg = (windows[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap"))
        wten = windows["tenure"].to_numpy(np.float64)
        y_then = windows["returned"].to_numpy(bool)
        model = trained.chance
        then_flags = trained.rule.flags(
            trained.terms,
            wr,
            wo,
            wm,
            model.predict(wr, wo, wm, wten, wg),
            model.predict(np.zeros(len(wr)), wo, wm, wten - wr, wg),
        )
        strata_then = trained.terms.bands(wr, wo) * 3 + kinds_of(wo, then_flags)
        scores["bands"] = group_rates(strata_then, y_then, band * 3 + kinds_of(o, flags))
        g_then, g_now = _grid(wr, r, len(trained.segments))
        scores["recency_grid"] = group_rates(g_then, y_then, g_now)
        g_then, g_now = _grid(wr, r, max(len(trained.segments) // 3, 1))
        scores["recency_x_purchase_days"] = group_rates(
            g_then * 3 + np.minimum(wo, 3), y_then, g_now * 3 + np.minimum(o, 3)
        )
        prior = float(y_then.mean())
        rate_of = np.full(len(by), prior)
        for c, seg in by.items():
            if seg.future is not None and seg.future.customers:
                rate_of[c] = seg.future.rate
        scores["segments"] = rate_of[labels]
    say(f"Cut-off {cutoff.isoformat()}: fitting BG/NBD on the same history (a reference)")
    bg_expected, p_bg, _ = _bgnbd(table.frame, horizon)
    scores["bgnbd"] = bg_expected
    chance = assigned["chance"].to_numpy(np.float64)
    if np.isfinite(chance).all():
        scores["chance"] = chance
    aucs = {key: (None if (sc := scores.get(key)) is None else auc(y, sc)) for key in SCORES}
    chance_vs: dict[str, tuple[float, float, float] | None] = {}
    if scores["chance"] is not None:
        for key in SCORES:
            other = scores.get(key)
            if key != "chance" and other is not None:
                chance_vs[key] = auc_difference(y, scores["chance"], other)
    cal = calibration(y, chance, p_bg) if scores["chance"] is not None else None
    realized = [(o_.name, o_.base, o_.future) for o_ in segments]
    claims = tuple(future_checks(realized, tiers))
    rule_cells = trained.rule_cells
    result = CutoffResult(
        cutoff=cutoff,
        horizon=horizon,
        customers=len(y),
        returned=int(y.sum()),
        model_k=trained.info.k,
        terms=(trained.terms.return_time, trained.terms.return_window, trained.terms.lost_after),
        segments=tuple(segments),
        tiers=tiers,
        flagged=future_of(y[flags], spend[flags]),
        not_flagged=future_of(y[~flags], spend[~flags]),
        auc=aucs,
        chance_vs=chance_vs,
        calibration=cal,
        claims=claims,
        rule_cells=rule_cells,
        kmeans_segments=len(trained.segments) - rule_cells,
        seconds=round(time.perf_counter() - t0, 2),
    )
    return result, trained


def run(
    source: Source,
    *,
    horizon: int | None = None,
    cutoffs: int = DEFAULT_CUTOFFS,
    as_of: dt.date | None = None,
    k: int = DEFAULT_K,
    seed: int = RANDOM_STATE,
    progress: Callable[[str], None] | None = None,
) -> Backtest:
    """Backtest ``source``: at ``as_of`` (one cut-off) or at ``cutoffs`` cut-offs a return window
    (or ``horizon``) apart."""
    say = progress or (lambda _: None)
    if horizon is not None and horizon < outlook_mod.MIN_HORIZON:
        raise InputError(f"--horizon must be at least {outlook_mod.MIN_HORIZON} days, got {horizon}")
    with opened(source, None, personas=False) as src:
        say(f"Reading {source.describe()}")
        everything = src.rfm()
        last, first = everything.last_day, outlook_mod.first_day(everything)
        length = (last - first).days
        if length < 3 * outlook_mod.MIN_HORIZON:
            raise DataError(
                f"{src.where}: the history spans {length:,} day{'s' if length != 1 else ''}: a backtest needs a "
                f"model trained on part of it and at least {outlook_mod.MIN_HORIZON} days after the cut-off"
            )
        if horizon is None:
            terms = measure(everything.frame, everything.gaps, everything.currency, everything.idle_days)
            spacing = max(outlook_mod.MIN_HORIZON, terms.return_window)
            reason = (
                f"each model's own, as served (its return window, or half its history); cut-offs "
                f"spaced by the return window of all the data, {spacing:,} days"
            )
        else:
            spacing = horizon
            reason = "given with --horizon (the chance is learned for it)"
        if as_of is not None:
            if as_of >= last:
                raise DataError(f"{src.where}: the data ends on {last.isoformat()}: a cut-off must come before it")
            if (as_of - first).days < 2 * outlook_mod.MIN_HORIZON:
                raise DataError(
                    f"{src.where}: the data starts on {first.isoformat()}: a cut-off of {as_of.isoformat()} leaves "
                    "too few days of history to learn from"
                )
            chosen, skipped = [as_of], list[str]()
        else:
            chosen, skipped = default_cutoffs(last, first, spacing, cutoffs)
        results = []
        for c in chosen:
            try:
                results.append(run_cutoff(src, c, horizon, k=k, seed=seed, say=say, last=last)[0])
            except TooLate as late:
                if as_of is not None:
                    raise DataError(
                        f"{src.where}: the data ends on {last.isoformat()}; the cut-off {late}: use an earlier "
                        "cut-off or a shorter --horizon"
                    ) from None
                skipped.append(str(late))
            except TooEarly as early:
                if as_of is not None:
                    raise DataError(
                        f"{src.where}: the data starts on {first.isoformat()}; the cut-off {early}: use a later one"
                    ) from None
                skipped.append(str(early))
        if not results:
            raise DataError(
                f"{src.where}: {length:,} days of history are too few to backtest with cut-offs {spacing:,} days apart "
                "(each needs its model's horizon after it and more than that before it)"
                + ("; try a shorter --horizon" if horizon is not None and horizon > outlook_mod.MIN_HORIZON else "")
            )
    return Backtest(source.describe(), horizon, reason, tuple(results), tuple(_summarise_skipped(skipped)))


def _summarise_skipped(skipped: list[str]) -> list[str]:
    """At most three skipped cut-offs spelled out, the rest counted."""
    if len(skipped) <= 3:
        return skipped
    return [*skipped[:2], f"{len(skipped) - 2:,} earlier cut-offs, for the same reason or too little history"]
