"""Does a shop's segmentation tell the truth, and does it hold still? ``segment validate``.

For one source: every segment's definition check (at least two thirds of its customers fit it), size
and revenue share; the at-risk count and revenue; the stability of names and of the at-risk
count across seeds and across K; the "no promotion without a purchase" invariants (scoring and
retraining the same customers ``shift_days`` later); and what BG/NBD's P(alive) adds where its
fit can estimate dropout. Nothing is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from segmentation.analysis import palive
from segmentation.data.kinds import RFMTable
from segmentation.model import outlook as outlook_mod
from segmentation.model.atrisk import AtRiskSummary
from segmentation.model.estimator import DEFAULT_K, FEATURES, RANDOM_STATE, kinds_of
from segmentation.model.outlook import Future, TierFutures
from segmentation.model.segments import TrainedModel
from segmentation.model.terms import Band, measure
from segmentation.serving.training import fit

SEEDS = (RANDOM_STATE, 1, 2, 3, 4)
KS = tuple(range(6, 15))
MAX_SEED_CHANGE = 0.02  # share of customers whose base name changes with the seed
MAX_AT_RISK_CHANGE = 0.01  # relative change of the at-risk count across K and seeds
SHIFT_DAYS = 30


@dataclass(frozen=True)
class SegmentCheck:
    name: str
    base: str
    definition: str
    fit: float
    passed: bool
    customers: int
    share: float
    revenue_share: float
    at_risk: int
    typical: str


@dataclass(frozen=True)
class Run:
    """One refit of the same data with another seed or K."""

    seed: int
    k: int
    names: tuple[str, ...]  # base names present, sorted
    changed: float  # share of customers whose base name differs from the reference fit
    at_risk: int


@dataclass(frozen=True)
class Invariants:
    days: int
    scored_promoted: int  # customers scored later by the same model into a more active band
    scored_risk_to_active: int  # at risk before, in an active segment later
    retrained_promoted: int  # same, with a model retrained on the later snapshot
    retrained_risk_to_active: int

    @property
    def hold(self) -> bool:
        return not (
            self.scored_promoted
            or self.scored_risk_to_active
            or self.retrained_promoted
            or self.retrained_risk_to_active
        )


@dataclass(frozen=True)
class PAlive:
    usable: bool
    reason: str
    repeat_buyers: int = 0
    likely_gone: int = 0  # P(alive) < 0.5
    also_at_risk: int = 0  # of those, flagged by the rule
    lost_by_terms: int = 0  # of those, past the lost cut-off (the rule leaves them out on purpose)
    adds: int = 0  # of those, not flagged, not lost: what P(alive) adds
    rule_alive: int = 0  # flagged by the rule though P(alive) >= 0.5
    params: tuple[float, float, float, float] | None = None


ACTIVE_NAMES = ("Champions", "Loyal Customers", "Potential Loyalists", "Promising", "New Customers")
AT_RISK_NAMES = ("Can't Lose Them", "At Risk")
SLEEPING_NAMES = ("Hibernating", "Lost")
MIN_COMPARED = 200  # customers a segment or tier needs (a horizon before the end) to be compared


@dataclass(frozen=True)
class FutureCheck:
    """One claim a name makes about what its customers do next, against what they did."""

    claim: str
    passed: bool | None  # None: too few customers to tell
    detail: str
    clear: bool | None = None  # whether the 95% intervals are apart (the verdict is not down to chance)


def _apart(high: Future, low: Future, factor: float = 1.0) -> bool:
    """Whether ``high`` is above ``factor`` x ``low`` (or below it) with their 95% intervals apart."""
    (hlo, hhi), (llo, lhi) = high.interval, low.interval
    return hlo > factor * lhi or hhi < factor * llo


def _rate(f: Future) -> str:
    lo, hi = f.interval
    return f"{f.rate:.1%} of {f.customers:,} ({lo:.1%}–{hi:.1%})"


def future_checks(segments: Sequence[tuple[str, str, Future | None]], tiers: TierFutures | None) -> list[FutureCheck]:
    """What each name claims about the future, checked on what customers did next: (name,
    base name, measured future) per segment, and the tiers. Only segments and tiers of at least
    ``MIN_COMPARED`` customers are compared; the comparisons are of the measured shares."""
    if tiers is None:
        return [FutureCheck("names hold on the future", None, "no future measured: the history is too short")]
    big = [(n, b, f) for n, b, f in segments if f is not None and f.customers >= MIN_COMPARED]
    out: list[FutureCheck] = []
    risk, lapsed, active = tiers.at_risk, tiers.lapsed, tiers.active
    risk_known = risk.customers >= MIN_COMPARED
    for name, base, f in big:
        if base in ACTIVE_NAMES:
            out.append(
                FutureCheck(
                    f"{name} comes back more often than the customers at risk",
                    (f.rate > risk.rate) if risk_known else None,
                    f"{_rate(f)} against {_rate(risk)}",
                    _apart(f, risk) if risk_known else None,
                )
            )
    out.append(
        FutureCheck(
            "the customers at risk come back more often than the lapsed",
            (risk.rate > lapsed.rate) if risk_known and lapsed.customers >= MIN_COMPARED else None,
            f"{_rate(risk)} against {_rate(lapsed)}",
            _apart(risk, lapsed) if risk_known and lapsed.customers >= MIN_COMPARED else None,
        )
    )
    others = [(n, f) for n, b, f in big if b != "Lost"]
    for name, base, f in big:
        if base == "Lost":
            least = min(others, key=lambda x: x[1].rate, default=None)
            out.append(
                FutureCheck(
                    f"{name} comes back least",
                    least is None or f.rate <= least[1].rate,
                    "no other segment to compare"
                    if least is None
                    else f"{_rate(f)}; the least of the others, {least[0]}: {_rate(least[1])}",
                    None if least is None else _apart(least[1], f),
                )
            )
            out.append(
                FutureCheck(
                    f"{name} comes back at most half as often as the active customers",
                    (f.rate <= 0.5 * active.rate) if active.customers >= MIN_COMPARED else None,
                    f"{_rate(f)} against {_rate(active)}",
                    _apart(active, f, 2.0) if active.customers >= MIN_COMPARED else None,
                )
            )
        if base in AT_RISK_NAMES:
            sleeping = [(n, g) for n, b, g in big if b in SLEEPING_NAMES]
            most = max(sleeping, key=lambda x: x[1].rate, default=None)
            out.append(
                FutureCheck(
                    f"{name} comes back more often than any Hibernating or Lost segment",
                    most is None or f.rate > most[1].rate,
                    "no Hibernating or Lost segment to compare"
                    if most is None
                    else f"{_rate(f)}; the likeliest of those, {most[0]}: {_rate(most[1])}",
                    None if most is None else _apart(f, most[1]),
                )
            )
    return out


@dataclass(frozen=True)
class Report:
    source: str
    customers: int
    trained: TrainedModel
    segments: tuple[SegmentCheck, ...]
    at_risk: AtRiskSummary
    runs: tuple[Run, ...]
    invariants: Invariants
    palive: PAlive
    futures: tuple[FutureCheck, ...] = ()

    @property
    def futures_hold(self) -> bool:
        return all(c.passed is not False for c in self.futures)

    @property
    def definitions_hold(self) -> bool:
        return all(s.passed for s in self.segments)

    def seed_runs(self) -> list[Run]:
        return [r for r in self.runs if r.k == self.trained.info.k]

    def k_runs(self) -> list[Run]:
        return [r for r in self.runs if r.seed == self.trained.info.seed]

    @property
    def seed_names_same(self) -> bool:
        return len({r.names for r in self.seed_runs()}) <= 1

    @property
    def seed_max_change(self) -> float:
        return max((r.changed for r in self.seed_runs()), default=0.0)

    @property
    def at_risk_max_change(self) -> float:
        counts = [r.at_risk for r in self.runs] + [self.at_risk.customers]
        base = self.at_risk.customers
        return max(abs(c - base) for c in counts) / base if base else float(max(counts) > 0)

    @property
    def passed(self) -> bool:
        return (
            self.definitions_hold
            and self.seed_names_same
            and self.seed_max_change <= MAX_SEED_CHANGE
            and self.at_risk_max_change <= MAX_AT_RISK_CHANGE
            and self.invariants.hold
            and self.futures_hold
        )


def _base_labels(trained: TrainedModel, labels: np.ndarray) -> np.ndarray:
    by = trained.by_cluster()
    return np.array([by[c].base for c in range(len(by))], dtype=object)[labels]


def _bands(trained: TrainedModel, labels: np.ndarray) -> np.ndarray:
    by = trained.by_cluster()
    return np.array([int(by[c].band) for c in range(len(by))])[labels]


def run(
    table: RFMTable,
    *,
    k: int = DEFAULT_K,
    seeds: Sequence[int] = SEEDS,
    ks: Sequence[int] = KS,
    shift_days: int = SHIFT_DAYS,
    progress: Callable[[str], None] | None = None,
) -> Report:
    say = progress or (lambda _: None)
    say("Learning who buys again from earlier cut-offs of the history")
    outlook = outlook_mod.learn(table, measure(table.frame, table.gaps, table.currency, table.idle_days))
    say(f"Training the reference model (K={k}, seed {seeds[0]})")
    trained, assignments = fit(table, k=k, seed=seeds[0], outlook=outlook)
    labels = assignments["cluster"].to_numpy()
    flags = assignments["at_risk"].to_numpy(bool)
    ref_base = _base_labels(trained, labels)
    segments = tuple(
        SegmentCheck(
            s.name,
            s.base,
            s.definition,
            s.check.fit,
            s.check.passed,
            s.customers,
            s.share,
            s.revenue_share,
            s.at_risk,
            s.typical(trained.terms),
        )
        for s in trained.segments
    )
    runs = []
    for seed in seeds:
        for kk in [k] if seed != seeds[0] else [kk for kk in ks if kk != k]:
            say(f"Refitting with seed {seed}, K={kk}")
            other, other_assign = fit(table, k=kk, seed=seed, outlook=outlook)
            other_base = _base_labels(other, other_assign["cluster"].to_numpy())
            runs.append(
                Run(
                    seed,
                    kk,
                    tuple(sorted({s.base for s in other.segments})),
                    float((other_base != ref_base).mean()),
                    int(other_assign["at_risk"].sum()),
                )
            )
    runs.insert(0, Run(seeds[0], k, tuple(sorted({s.base for s in trained.segments})), 0.0, int(flags.sum())))

    say(f"Checking that {shift_days} days without a purchase never make anyone more active")
    later = table.frame.assign(recency=table.frame["recency"] + shift_days)
    band_now = _bands(trained, labels)
    later_flags = trained.rule.frame_flags(trained.terms, later, trained.chance)
    later_labels = trained.model.predict(
        later[FEATURES].to_numpy(np.float64), kinds_of(later["occasions"], later_flags)
    )
    band_scored = _bands(trained, later_labels)
    later_table = replace(
        table, frame=later, snapshot_date=table.snapshot_date + pd.Timedelta(days=shift_days).to_pytimedelta()
    )
    retrained, later_assign = fit(later_table, k=k, seed=seeds[0], outlook=outlook)
    band_retrained = _bands(retrained, later_assign["cluster"].to_numpy())
    active = int(Band.ACTIVE)
    invariants = Invariants(
        days=shift_days,
        scored_promoted=int((band_scored < band_now).sum()),
        scored_risk_to_active=int((flags & (band_scored == active)).sum()),
        retrained_promoted=int((band_retrained < band_now).sum()),
        retrained_risk_to_active=int((flags & (band_retrained == active)).sum()),
    )
    say("Fitting BG/NBD for P(alive)")
    return Report(
        table.source,
        table.customers,
        trained,
        segments,
        trained.at_risk,
        tuple(runs),
        invariants,
        _palive(table.frame, trained, flags, band_now),
        tuple(future_checks([(s.name, s.base, s.future) for s in trained.segments], trained.futures)),
    )


def _palive(frame: pd.DataFrame, trained: TrainedModel, flags: np.ndarray, band: np.ndarray) -> PAlive:
    model, why = palive.fit(frame)
    if model is None:
        return PAlive(False, why)
    x, t_x, T = palive.history(frame)
    p = model.p_alive(x, t_x, T)
    repeat = x > 0
    own_band = trained.terms.bands(frame["recency"], frame["occasions"])
    active_repeat = repeat & (own_band == int(Band.ACTIVE))
    if active_repeat.any() and float((p[active_repeat] >= 0.5).mean()) < 0.8:
        dropout = model.a / (model.a + model.b)
        return PAlive(
            False,
            (
                f"the fit puts the chance of dropping out after a purchase at {dropout:.0%}, so it calls "
                f"{float((p[active_repeat] < 0.5).mean()):.0%} of the repeat buyers who bought within the return "
                "time probably gone: it cannot tell the lapsing from the active here"
            ),
            params=(model.r, model.alpha, model.a, model.b),
        )
    gone = repeat & (p < 0.5)
    lost = own_band == int(Band.LOST)
    return PAlive(
        True,
        "fitted",
        repeat_buyers=int(repeat.sum()),
        likely_gone=int(gone.sum()),
        also_at_risk=int((gone & flags).sum()),
        lost_by_terms=int((gone & ~flags & lost).sum()),
        adds=int((gone & ~flags & ~lost).sum()),
        rule_alive=int((flags & repeat & ~gone).sum()),
        params=(model.r, model.alpha, model.a, model.b),
    )
