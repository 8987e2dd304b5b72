"""Why these segments: K diagnostics and other clustering algorithms on the same features.

Everything here runs on one fixed-size sample of the customers (``SAMPLE`` customers drawn
uniformly with seed 0; all of them when there are fewer), in the served model's feature space:
log1p of recency, purchase days and spend, standardised with the model's scaler.

- **Choosing K** (4..14): for the served kind of model (KMeans inside the recency bands and
  kinds of customer) and for a free KMeans on the same features: inertia (the within-cluster sum
  of squares, for the elbow), silhouette (on ``SILHOUETTE_ROWS`` of the sample) and stability
  (the adjusted Rand index between two seeds).
- **Other algorithms**: a Gaussian mixture with the number of components chosen by BIC (and one
  with K components), HDBSCAN and DBSCAN: their clusters, sizes, noise, silhouette and agreement
  with the segments (adjusted Rand index), and what each finds that the segments do not.

Nothing here changes the served model; the report (``report.py``) shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentation.analysis.alternatives import (
    Algorithm,
    _algorithms,
    _ari,
    _distinct,
    _inertia,
    _recommend,
    _silhouette,
)
from segmentation.model.estimator import FEATURES, MIN_K, SegmentModel, kinds_of
from segmentation.model.segments import TrainedModel

SAMPLE = 10_000
SILHOUETTE_ROWS = 3_000
KS = tuple(range(MIN_K, 15))
BEYOND = (16, 18, 20, 24, 30)  # the scan goes on past KS while the silhouette has not peaked, to the largest K
SEEDS = (0, 1)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class KPoint:
    k: int
    inertia: float
    silhouette: float | None
    stability: float  # adjusted Rand index between the two seeds' labels

    def as_json(self) -> dict[str, Any]:
        return {"k": self.k, "inertia": self.inertia, "silhouette": self.silhouette, "stability_ari": self.stability}


@dataclass(frozen=True)
class KScan:
    served_k: int
    segments: tuple[KPoint, ...]  # the served kind of model: KMeans within bands and kinds
    kmeans: tuple[KPoint, ...]  # a free KMeans on the same features
    elbow_segments: int
    elbow_kmeans: int
    recommendation: str

    def at(self, k: int, free: bool = False) -> KPoint:
        return next(p for p in (self.kmeans if free else self.segments) if p.k == k)

    def as_json(self) -> dict[str, Any]:
        return {
            "served_k": self.served_k,
            "segments": [p.as_json() for p in self.segments],
            "kmeans": [p.as_json() for p in self.kmeans],
            "elbow_segments": self.elbow_segments,
            "elbow_kmeans": self.elbow_kmeans,
            "recommendation": self.recommendation,
        }


@dataclass(frozen=True)
class Diagnostics:
    sample: int  # customers the diagnostics ran on
    customers: int  # all customers
    served_silhouette: float | None  # the segments on the same sample and features
    kscan: KScan
    algorithms: tuple[Algorithm, ...]
    recommendation: str

    @property
    def scan_note(self) -> str:
        """Why the scan's row for the served K and the served model need not score the same: the
        scan refits every K on the sample alone, the served model was fitted on every customer."""
        here = next((p for p in self.kscan.segments if p.k == self.kscan.served_k), None)
        if here is None or here.silhouette is None or self.served_silhouette is None:
            return ""
        return (
            f"Each K above is refitted on the {self.sample:,}-customer sample alone (seeds {SEEDS[0]} and {SEEDS[1]}); "
            f"at K={self.kscan.served_k} that refit scores {here.silhouette:.3f}, while the served model, fitted on "
            f"all {self.customers:,} customers, scores {self.served_silhouette:.3f} on the same rows."
        )

    @property
    def silhouette_rows(self) -> int:
        """How many of the sample's customers every silhouette here is measured on."""
        return min(SILHOUETTE_ROWS, self.sample)

    def as_json(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "customers": self.customers,
            "silhouette_rows": self.silhouette_rows,
            "seeds": list(SEEDS),
            "served_silhouette": self.served_silhouette,
            "scan_note": self.scan_note,
            "k_scan": self.kscan.as_json(),
            "algorithms": [a.as_json() for a in self.algorithms],
            "recommendation": self.recommendation,
        }


def run(
    trained: TrainedModel, frame: pd.DataFrame, labels: np.ndarray, progress: Progress | None = None
) -> Diagnostics:
    """The diagnostics for a trained model and its customers (``frame``: the RFM columns;
    ``labels``: each customer's segment)."""
    say = progress or (lambda _: None)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(frame), SAMPLE, replace=False)) if len(frame) > SAMPLE else np.arange(len(frame))
    sample = frame.iloc[rows]
    X = sample[FEATURES].to_numpy(np.float64)
    Z = trained.model.transform(X)
    served = np.asarray(labels)[rows]
    flags = trained.rule.frame_flags(trained.terms, sample, trained.chance)
    kinds = kinds_of(sample["occasions"], flags)
    sil_rows = np.sort(rng.choice(len(Z), SILHOUETTE_ROWS, replace=False)) if len(Z) > SILHOUETTE_ROWS else None
    names = {s.cluster: s.name for s in trained.all_segments}

    say(f"Choosing K: {len(KS)} values of K, two seeds each, on {len(Z):,} customers")
    kscan = _kscan(trained, X, Z, kinds, sil_rows, say)
    say("Comparing other algorithms: Gaussian mixtures (BIC), HDBSCAN, DBSCAN")
    algorithms = _algorithms(trained, Z, served, sample, sil_rows, names, say)
    served_sil = _silhouette(Z, served, sil_rows)
    return Diagnostics(
        sample=len(Z),
        customers=len(frame),
        served_silhouette=served_sil,
        kscan=kscan,
        algorithms=algorithms,
        recommendation=_recommend(trained, served_sil, algorithms, len(Z)),
    )


# -- choosing K ------------------------------------------------------------------------------


def _kscan(trained, X, Z, kinds, sil_rows, say) -> KScan:
    """K from MIN_K up: the range KS, then on (BEYOND) while the best silhouette of either kind of
    model is still at the largest K tried, so the scan stops past a peak or says that there is none."""
    from sklearn.cluster import KMeans

    cut = tuple(trained.model.cutoffs)
    segments: list[KPoint] = []
    free: list[KPoint] = []
    distinct = _distinct(Z)
    for k in (*KS, *BEYOND):
        if k >= distinct:  # no K clusters among fewer distinct customers
            break
        if k > KS[-1] and not _rising(segments, free):
            break
        fits = []
        for seed in SEEDS:
            m = SegmentModel(k, cut, random_state=seed, n_init=4, max_fit=None, n_threads=1, lost=trained.model.lost)
            try:
                fits.append(m.fit(X.copy(), kinds=kinds).labels_.astype(np.int64))
            except ValueError:  # too few distinct customers for k clusters in the bands
                fits = []
                break
        if fits:
            segments.append(KPoint(k, _inertia(Z, fits[0]), _silhouette(Z, fits[0], sil_rows), _ari(*fits)))
        runs = [KMeans(k, n_init=4, random_state=seed).fit(Z) for seed in SEEDS]
        free.append(
            KPoint(
                k, float(runs[0].inertia_), _silhouette(Z, runs[0].labels_, sil_rows), _ari(*(r.labels_ for r in runs))
            )
        )
    served_k = trained.info.k
    return KScan(
        served_k=served_k,
        segments=tuple(segments),
        kmeans=tuple(free),
        elbow_segments=_elbow(segments) if segments else served_k,
        elbow_kmeans=_elbow(free),
        recommendation=_k_recommendation(served_k, segments, free),
    )


def _rising(*scans: Sequence[KPoint]) -> bool:
    """Whether the best silhouette of any scan is at its largest K: no peak yet."""
    return any(_edge(points) for points in scans)


def _edge(points: Sequence[KPoint]) -> bool:
    best = _best(points)
    return best is not None and bool(points) and best.k == points[-1].k


def _elbow(points: Sequence[KPoint]) -> int:
    """The K farthest below the straight line from the first to the last inertia (the "knee")."""
    ks = np.array([p.k for p in points], dtype=np.float64)
    y = np.array([p.inertia for p in points], dtype=np.float64)
    if len(ks) < 3 or y[0] == y[-1]:
        return int(ks[0])
    xn, yn = (ks - ks[0]) / (ks[-1] - ks[0]), (y - y[-1]) / (y[0] - y[-1])
    return int(ks[int(np.argmax((1 - xn) - yn))])


def _best(points: Sequence[KPoint]) -> KPoint | None:
    scored = [p for p in points if p.silhouette is not None]
    return max(scored, key=lambda p: (p.silhouette, -p.k)) if scored else None


def _k_recommendation(served_k: int, segments: Sequence[KPoint], free: Sequence[KPoint]) -> str:
    best = _best(segments)
    here = next((p for p in segments if p.k == served_k), None)
    if best is None or here is None or here.silhouette is None or best.silhouette is None:
        return f"K={served_k} is served; the silhouette could not be measured on this sample."
    if _edge(segments):
        text = (
            f"The silhouette keeps rising up to K={best.k} ({best.silhouette:.3f}), the largest K scanned: it has no "
            f"peak here, so it cannot choose K; K={served_k} (served) scores {here.silhouette:.3f}."
        )
    elif best.k == served_k:
        text = f"K={served_k} (served) also separates best (silhouette {here.silhouette:.3f}, a peak of the scan)."
    else:
        cost = best.silhouette - here.silhouette
        finer = "finer" if served_k > best.k else "coarser"
        text = (
            f"The silhouette peaks at K={best.k} ({best.silhouette:.3f}); K={served_k} (served) gives {finer} "
            f"segments at a cost of {cost:.2f} silhouette."
        )
    fbest = _best(free)
    if fbest is not None and fbest.silhouette is not None:
        where = f"keeps rising up to K={fbest.k}, the largest scanned" if _edge(free) else f"peaks at K={fbest.k}"
        text += f" For a free KMeans, which may mix recency bands, it {where} ({fbest.silhouette:.3f})."
    return text


# -- other algorithms ------------------------------------------------------------------------
