"""Other clustering algorithms on the same customers (Gaussian mixture, HDBSCAN, DBSCAN), described in the shop's terms, and which to keep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentation.model.estimator import MIN_K
from segmentation.model.segments import plural
from segmentation.model.terms import Band

GMM_RANGE = tuple(range(2, 13))  # Gaussian mixture components tried (by BIC)
DENSITY_MIN_SAMPLES = 20  # HDBSCAN's and DBSCAN's neighbourhood


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
    """The recommendation, from the measured figures: another algorithm is recommended when it
    separates the customers clearly better (silhouette more than 0.02 higher) while keeping what
    the served segments need (between MIN_K and 30 clusters, under 5% noise, under 5% of its
    customers in a cluster of another recency band); else the served model is kept."""
    k = trained.info.k
    fits = sum(s.check.passed for s in trained.segments)
    usable = [
        a
        for a in algorithms
        if a.silhouette is not None
        and served_sil is not None
        and a.silhouette > served_sil + 0.02
        and MIN_K <= a.clusters <= 30
        and a.noise_share < 0.05
        and a.band_mix < 0.05
    ]
    best = max(usable, key=lambda a: a.silhouette or 0.0, default=None)
    if best is not None:
        lines = [
            f"Recommended for this shop: consider {best.name} ({best.clusters} clusters, silhouette "
            f"{_num(best.silhouette)} against {_num(served_sil)} for the served KMeans within recency bands): "
            "it separates the customers clearly better and keeps recency bands apart, so names could hold for it too."
        ]
    else:
        lines = [
            f"Recommended for this shop: keep KMeans within recency bands (served, K={k}, silhouette "
            f"{_num(served_sil)} on the sample): {fits} of its {len(trained.segments)} names hold for their "
            "customers and no segment mixes recency bands, and no other algorithm below separates the customers "
            "clearly better while keeping bands apart with few enough clusters and little noise."
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
        better = False
        if a.silhouette is not None and served_sil is not None:
            better = a.silhouette > served_sil + 0.02
            verdict = "better" if better else "about as well" if a.silhouette >= served_sil - 0.02 else "less well"
            why.append(f"separates {verdict} (silhouette {a.silhouette:.3f})")
        if a.band_mix >= 0.05:
            why.append(
                f"{'but' if better else 'and'} {a.band_mix:.0%} of its customers sit in a cluster of another recency "
                "band, where no band's names (such as New Customers or Lost) would hold"
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
