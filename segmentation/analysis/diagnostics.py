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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentation.model.estimator import FEATURES, MIN_K, SegmentModel, kinds_of
from segmentation.model.segments import TrainedModel, plural
from segmentation.model.terms import Band

SAMPLE = 10_000
SILHOUETTE_ROWS = 3_000
KS = tuple(range(MIN_K, 15))
BEYOND = (16, 18, 20, 24, 30)  # the scan goes on past KS while the silhouette has not peaked, to the largest K
SEEDS = (0, 1)
GMM_RANGE = tuple(range(2, 13))
DENSITY_MIN_SAMPLES = 20
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
class Algorithm:
    name: str
    settings: str  # how it was run, in words
    clusters: int  # not counting noise
    sizes: tuple[int, ...]  # largest first, noise not included
    noise_share: float
    silhouette: float | None  # noise left out; None with fewer than two clusters
    ari: float  # against the segments, on the whole sample (noise as one group)
    band_mix: float = 0.0  # customers in a cluster whose majority is of another recency band
    findings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "settings": self.settings,
            "clusters": self.clusters,
            "sizes": list(self.sizes),
            "noise_share": self.noise_share,
            "silhouette": self.silhouette,
            "ari_vs_segments": self.ari,
            "band_mix": self.band_mix,
            "findings": list(self.findings),
            **self.extra,
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

    def as_json(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "customers": self.customers,
            "silhouette_rows": min(SILHOUETTE_ROWS, self.sample),
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


def _distinct(Z: np.ndarray) -> int:
    return len(np.unique(Z, axis=0))


def _inertia(Z: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for c in np.unique(labels):
        part = Z[labels == c]
        total += float(((part - part.mean(axis=0)) ** 2).sum())
    return total


def _silhouette(Z: np.ndarray, labels: np.ndarray, rows: np.ndarray | None) -> float | None:
    from sklearn.metrics import silhouette_score

    z, lab = (Z, labels) if rows is None else (Z[rows], labels[rows])
    if len(np.unique(lab)) < 2 or len(np.unique(lab)) >= len(lab):
        return None
    return float(silhouette_score(z, lab))


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


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


def _algorithms(trained, Z, served, sample, sil_rows, names, say) -> tuple[Algorithm, ...]:
    from sklearn.cluster import DBSCAN, HDBSCAN
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import NearestNeighbors

    out = []
    bics = {}
    distinct = _distinct(Z)
    tried = [n for n in GMM_RANGE if n < distinct]
    for n in tried:
        bics[n] = float(GaussianMixture(n, random_state=0, reg_covar=1e-4).fit(Z).bic(Z))
    n_best = min(bics, key=lambda n: (bics[n], n)) if bics else None
    k = trained.info.k
    choices = (
        [(k, "K components")]
        if n_best is None
        else [
            (n_best, f"components chosen by BIC over {tried[0]}..{tried[-1]}"),
            (k, "K components"),
        ]
    )
    for n, why in choices:
        if (why == "K components" and n == n_best) or n >= distinct:
            continue
        labels = GaussianMixture(n, random_state=0, reg_covar=1e-4).fit(Z).predict(Z)
        extra = {"bic": {str(m): b for m, b in bics.items()}, "chosen_by_bic": n_best} if n == n_best else {}
        out.append(
            _describe(
                f"Gaussian mixture ({n} components)", why, labels, Z, served, sample, sil_rows, names, trained, extra
            )
        )
    if len(Z) < 2 * DENSITY_MIN_SAMPLES:  # too few customers to say what is dense
        return tuple(out)
    say("  HDBSCAN")
    min_size = max(25, round(0.005 * len(Z)))
    labels = HDBSCAN(min_cluster_size=min_size, copy=True).fit(Z).labels_
    out.append(
        _describe(
            "HDBSCAN",
            f"min_cluster_size {min_size} (0.5% of the sample)",
            labels,
            Z,
            served,
            sample,
            sil_rows,
            names,
            trained,
        )
    )
    say("  DBSCAN")
    dist, _ = NearestNeighbors(n_neighbors=DENSITY_MIN_SAMPLES).fit(Z).kneighbors(Z)
    eps = float(np.quantile(dist[:, -1], 0.95))
    labels = DBSCAN(eps=max(eps, 1e-6), min_samples=DENSITY_MIN_SAMPLES).fit(Z).labels_
    settings = f"eps {eps:.3f} (95th percentile of the distance to the {DENSITY_MIN_SAMPLES}th neighbour), min_samples {DENSITY_MIN_SAMPLES}"
    out.append(_describe("DBSCAN", settings, labels, Z, served, sample, sil_rows, names, trained))
    return tuple(out)


def _describe(name, settings, labels, Z, served, sample, sil_rows, names, trained, extra=None) -> Algorithm:
    labels = np.asarray(labels)
    noise = labels < 0
    kept = np.unique(labels[~noise])
    sizes = tuple(sorted((int((labels == c).sum()) for c in kept), reverse=True))
    sil = None
    if len(kept) >= 2:
        rows = np.flatnonzero(~noise)
        if sil_rows is not None:
            rows = np.intersect1d(rows, sil_rows)
        sil = _silhouette(Z[rows], labels[rows], None) if len(rows) > len(kept) else None
    bands = trained.terms.bands(sample["recency"], sample["occasions"])
    mixed = 0
    for c in kept:
        b = bands[labels == c]
        mixed += int(len(b) - np.bincount(b, minlength=4).max())
    return Algorithm(
        name=name,
        settings=settings,
        clusters=len(kept),
        sizes=sizes,
        noise_share=float(noise.mean()),
        silhouette=sil,
        ari=_ari(labels, served),
        band_mix=mixed / len(labels),
        findings=tuple(_findings(name, labels, served, sample, names, trained)),
        extra=extra or {},
    )


def _profile(part: pd.DataFrame, trained) -> str:
    terms = trained.terms
    occ = part["occasions"].to_numpy()
    shares = [
        ((occ == 1).mean(), "bought on one day only"),
        ((occ == 2).mean(), "bought on exactly 2 days"),
        ((occ >= 3).mean(), "bought on 3 or more days"),
    ]
    bands = terms.bands(part["recency"], part["occasions"])
    for b in np.unique(bands):
        shares.append(((bands == b).mean(), f"are {Band(int(b)).word} ({terms.band_range(Band(int(b)))})"))
    share, what = max(shares, key=lambda s: s[0])
    lead = f"{share:.0%} {what}" if share < 0.995 else f"all {what}"
    typical = (
        f"typically {plural(round(float(part['recency'].median())), 'day')} since the last order, "
        f"{plural(float(part['occasions'].median()), 'purchase day')}, {terms.money(float(part['monetary'].median()))}"
    )
    return f"{lead}; {typical}"


def _findings(name, labels, served, sample, names, trained) -> list[str]:
    """Up to three sentences on clusters the segments split, or single out, and on the noise."""
    out: list[tuple[int, str]] = []
    n = len(labels)
    for c in np.unique(labels):
        members = labels == c
        size = int(members.sum())
        if c < 0:
            continue
        segs, counts = np.unique(served[members], return_counts=True)
        order = np.argsort(-counts)
        top = [(names.get(int(segs[i]), str(segs[i])), counts[i] / size) for i in order[:2]]
        main_total = int((served == segs[order[0]]).sum())
        split = top[0][1] < 0.8
        subset = size < 0.5 * main_total and top[0][1] >= 0.8
        if not (split or subset):
            continue
        where = ", ".join(f"{share:.0%} in {seg}" for seg, share in top)
        if split:
            tail = f"the segments split them: {where}"
        else:
            tail = f"a part ({size / main_total:.0%}) of {top[0][0]}"
        out.append(
            (
                size,
                f"{name} groups {size:,} customers ({_pct(size / n)} of the sample): {_profile(sample[members], trained)}; {tail}.",
            )
        )
    out.sort(key=lambda t: -t[0])
    found = [text for _, text in out[:3]]
    noise = labels < 0
    if noise.any():
        found.append(
            f"It calls {int(noise.sum()):,} customers ({_pct(noise.mean())} of the sample) noise: "
            f"{_profile(sample[noise], trained)}."
        )
    if not found:
        found.append(f"{name} finds nothing the segments do not: each of its clusters lies mostly inside one segment.")
    return found


def _recommend(trained, served_sil, algorithms: Sequence[Algorithm], sample: int) -> str:
    k = trained.info.k
    fits = sum(s.check.passed for s in trained.segments)
    lines = [
        f"Recommended for this shop: keep KMeans within recency bands (served, K={k}, silhouette "
        f"{_num(served_sil)} on the sample): every customer is in a segment, and {fits} of its "
        f"{len(trained.segments)} names hold for their customers; no segment mixes recency bands."
    ]
    for a in algorithms:
        head = f"{a.clusters} cluster{'s' if a.clusters != 1 else ''}"
        if a.clusters < MIN_K:
            head += ", too coarse to act on"
        elif a.clusters > 30:
            head += ", too many to act on"
        if a.noise_share >= 0.05:
            head += f", {a.noise_share:.0%} of the customers left as noise"
        why = [head]
        if a.silhouette is not None and served_sil is not None:
            verdict = (
                "better"
                if a.silhouette > served_sil + 0.02
                else "no better"
                if a.silhouette >= served_sil - 0.02
                else "less well"
            )
            why.append(f"separates {verdict} (silhouette {a.silhouette:.3f})")
        if a.band_mix >= 0.05:
            why.append(
                f"but {a.band_mix:.0%} of its customers sit in a cluster of another recency band, where no "
                "name such as Active or Lost would hold"
            )
        why.append(f"agreement with the segments: adjusted Rand index {a.ari:.2f}")
        lines.append(f"{a.name}: " + "; ".join(why) + ".")
    if not any(a.name in {"HDBSCAN", "DBSCAN"} for a in algorithms):
        lines.append(f"HDBSCAN and DBSCAN were not run: {sample:,} customers are too few to tell what is dense.")
    return " ".join(lines)


def _pct(x: float) -> str:
    """A share in words that never rounds a few customers to 0%."""
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x:.2%}" if x >= 0.0001 else "<0.01%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
