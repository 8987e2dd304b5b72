"""The clustering model: KMeans within the shop's recency bands.

``SegmentModel`` follows scikit-learn's conventions: parameters in ``__init__``, learned state
in attributes ending with ``_`` set by ``fit``, ``predict`` for new data. Input is an
``(n, 3)`` array of recency (days), purchase days (occasions) and monetary (total spend).

Features are ``log1p`` then standard scaling, as in the original analysis. Unlike a plain
KMeans, a cluster never mixes customers of different recency bands (active, lapsing, lapsed,
lost; the band cut-offs are the shop's return time, return window and lost cut-off, given as
``cutoffs``), nor, when there are enough clusters, one-time with repeat buyers: the customers are
split into those *strata* first and KMeans runs inside each. A plain KMeans on a shop where 97%
buy once puts every repeat buyer in one or two clusters whatever their recency (frequency
dominates the scaled space), and no true name fits such a cluster.

How many clusters each stratum gets: one each, then every further cluster goes to the stratum
where it lowers the within-cluster sum of squares most (KMeans's own objective), measured with a
fixed seed so that the split does not depend on ``random_state``. With fewer clusters than
strata, one-time and repeat buyers of the same band are merged, smallest first; bands are never
merged (at least 4 clusters are needed).

Without a purchase, a customer's recency only grows, so their band only gets older: scoring the
same customers later can never move them into a more active band's cluster.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

DEFAULT_K = 11
RANDOM_STATE = 42
N_BANDS = 4
MIN_K = N_BANDS
FEATURES = ["recency", "occasions", "monetary"]  # columns of the RFM frame the model reads
ALLOCATION_SAMPLE = 50_000  # customers per stratum used to decide where extra clusters go
ANY = -1  # a stratum holding both one-time and repeat buyers of its band


class SegmentModel:
    """log1p → StandardScaler → KMeans inside each recency band (and one-time/repeat group)."""

    def __init__(self, n_clusters: int = DEFAULT_K, cutoffs: tuple[float, float, float] = (90, 180, 365),
                 random_state: int = RANDOM_STATE, n_init: int = 10):
        self.n_clusters = n_clusters
        self.cutoffs = cutoffs
        self.random_state = random_state
        self.n_init = n_init

    # -- strata ----------------------------------------------------------------------------
    def _band_group(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        band = np.searchsorted(np.asarray(self.cutoffs, dtype=np.float64), X[:, 0], side="left")
        group = (X[:, 1] >= 2).astype(np.int64)
        return band, group

    def strata(self, X: np.ndarray) -> np.ndarray:
        """The stratum index of every row (after ``fit``)."""
        band, group = self._band_group(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        return self.lookup_[band, group]

    def fit(self, X: np.ndarray) -> SegmentModel:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 3 or not len(X):
            raise ValueError("X must be a non-empty (n, 3) array of recency, occasions, monetary")
        if not (np.all(np.diff(self.cutoffs) > 0) and len(self.cutoffs) == N_BANDS - 1):
            raise ValueError(f"cutoffs must be 3 increasing day counts, got {self.cutoffs}")
        Z = np.log1p(X)
        self.scaler_ = StandardScaler().fit(Z)
        Zs = self.scaler_.transform(Z)
        band, group = self._band_group(X)
        keys = self._choose_strata(band, group)
        if len(keys) > self.n_clusters:
            raise ValueError(f"{self.n_clusters} clusters cannot keep {len(keys)} recency bands apart")
        self.strata_ = tuple(keys)
        self.lookup_ = _lookup(keys)
        stratum = self.lookup_[band, group]
        members = [np.flatnonzero(stratum == s) for s in range(len(keys))]
        ks = self._allocate([Zs[m] for m in members])
        centers, owner, labels = [], [], np.empty(len(X), dtype=np.int64)
        for s, (m, k) in enumerate(zip(members, ks)):
            local_centers, local_labels = self._fit_stratum(Zs[m], k)
            labels[m] = local_labels + len(centers)
            centers.extend(local_centers)
            owner.extend([s] * len(local_centers))
        self.cluster_centers_ = np.asarray(centers)
        self.center_stratum_ = np.asarray(owner, dtype=np.int64)
        self.clusters_per_stratum_ = tuple(int(k) for k in ks)
        self.labels_ = labels
        return self

    def _choose_strata(self, band: np.ndarray, group: np.ndarray) -> list[tuple[int, int]]:
        tally = np.bincount(band * 2 + group, minlength=N_BANDS * 2)
        counts = {(i // 2, i % 2): int(n) for i, n in enumerate(tally) if n}
        keys = sorted(counts)
        while len(keys) > self.n_clusters:
            # merge the smallest repeat stratum into its band's one-time stratum
            split = [b for b in {k[0] for k in keys} if (b, 0) in keys and (b, 1) in keys]
            if not split:
                break
            b = min(split, key=lambda b: (counts[(b, 1)], b))
            keys = sorted([k for k in keys if k[0] != b] + [(b, ANY)])
        return keys

    def _allocate(self, parts: list[np.ndarray]) -> list[int]:
        """Clusters per stratum: one each, then greedily where they lower the inertia most."""
        ks = [1] * len(parts)
        extra = self.n_clusters - len(parts)
        if extra <= 0:
            return ks
        rng = np.random.default_rng(0)
        samples, scale, distinct = [], [], []
        for P in parts:
            if len(P) > ALLOCATION_SAMPLE:
                samples.append(P[rng.choice(len(P), ALLOCATION_SAMPLE, replace=False)])
                scale.append(len(P) / ALLOCATION_SAMPLE)
            else:
                samples.append(P)
                scale.append(1.0)
            distinct.append(_distinct_rows(P, cap=self.n_clusters + 1))
        inertia = [[float(((S - S.mean(axis=0)) ** 2).sum()) * f] for S, f in zip(samples, scale)]

        def gain(s: int) -> float:
            k = ks[s]
            if k + 1 > distinct[s]:
                return -1.0
            if len(inertia[s]) <= k:
                km = KMeans(n_clusters=k + 1, n_init=1, random_state=0).fit(samples[s])
                inertia[s].append(float(km.inertia_) * scale[s])
            return inertia[s][k - 1] - inertia[s][k]

        gains = [gain(s) for s in range(len(parts))]
        for _ in range(extra):
            s = int(np.argmax(gains))
            if gains[s] < 0:
                raise ValueError(
                    f"only {sum(min(d, self.n_clusters) for d in distinct)} distinct profiles, "
                    f"too few for {self.n_clusters} clusters"
                )
            ks[s] += 1
            gains[s] = gain(s)
        return ks

    def _fit_stratum(self, P: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k == 1:
            return P.mean(axis=0, keepdims=True), np.zeros(len(P), dtype=np.int64)
        km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(P)
        order = np.argsort(-km.cluster_centers_[:, 2], kind="stable")  # higher spend first
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k)
        return km.cluster_centers_[order], rank[km.labels_]

    # -- predicting ------------------------------------------------------------------------
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Raw values to the standardised log space the clusters live in."""
        return (np.log1p(np.asarray(X, dtype=np.float64)) - self.scaler_.mean_) / self.scaler_.scale_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The nearest centre of each row's own stratum (squared Euclidean distance, first
        minimum on ties), in plain NumPy and in bounded memory."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        Z = self.transform(X)
        stratum = self.strata(X)
        out = np.empty(len(Z), dtype=np.int64)
        for s in range(len(self.strata_)):
            own = np.flatnonzero(self.center_stratum_ == s)
            rows = np.flatnonzero(stratum == s)
            centers = self.cluster_centers_[own]
            for start in range(0, len(rows), 65_536):
                idx = rows[start : start + 65_536]
                d = ((Z[idx, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
                out[idx] = own[d.argmin(axis=1)]
        return out

    def predict_one(self, r: float, f: float, m: float) -> int:
        band = 0
        while band < N_BANDS - 1 and r > self.cutoffs[band]:
            band += 1
        s = self.lookup_[band, 1 if f >= 2 else 0]
        z0 = (np.log1p(r) - self.scaler_.mean_[0]) / self.scaler_.scale_[0]
        z1 = (np.log1p(f) - self.scaler_.mean_[1]) / self.scaler_.scale_[1]
        z2 = (np.log1p(m) - self.scaler_.mean_[2]) / self.scaler_.scale_[2]
        own = self._own[s]
        c = self.cluster_centers_[own]
        d = (c[:, 0] - z0) ** 2 + (c[:, 1] - z1) ** 2 + (c[:, 2] - z2) ** 2
        return int(own[d.argmin()])

    @property
    def _own(self) -> list[np.ndarray]:
        own = self.__dict__.get("_own_cache")
        if own is None:
            own = [np.flatnonzero(self.center_stratum_ == s) for s in range(len(self.strata_))]
            self.__dict__["_own_cache"] = own
        return own

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_own_cache", None)
        return state

    @property
    def centroids_(self) -> np.ndarray:
        """Cluster centres back in original units (days, purchase days, money)."""
        return np.expm1(self.scaler_.inverse_transform(self.cluster_centers_))


def _lookup(keys: list[tuple[int, int]]) -> np.ndarray:
    """(band, one-time/repeat) → stratum, for every combination, including those not seen in
    training: a missing group uses its band's other stratum; a missing band uses the nearest
    older band that has customers, else the nearest more active one (so the mapping never
    makes anyone more active as their recency grows)."""
    table = np.full((N_BANDS, 2), -1, dtype=np.int64)
    by_band: dict[int, dict[int, int]] = {}
    for i, (b, g) in enumerate(keys):
        by_band.setdefault(b, {})[g] = i
    present = sorted(by_band)
    for b in range(N_BANDS):
        older = [p for p in present if p >= b]
        src = older[0] if older else present[-1]
        groups = by_band[src]
        for g in (0, 1):
            table[b, g] = groups.get(g, groups.get(ANY, groups.get(1 - g, -1)))
    return table


def _distinct_rows(P: np.ndarray, cap: int) -> int:
    """Number of distinct rows, counting only up to ``cap`` when a sample already shows that many."""
    head = P[:10_000]
    n = len(np.unique(head, axis=0))
    if n >= cap or len(P) <= len(head):
        return n
    return len(np.unique(P, axis=0))


def silhouette(model: SegmentModel, X: np.ndarray, labels: np.ndarray, sample_size: int = 5_000) -> float | None:
    """Silhouette on a fixed random sample (the full score is quadratic in customers)."""
    if len(np.unique(labels)) < 2:
        return None
    n = min(sample_size, len(X))
    return float(silhouette_score(model.transform(X), labels, sample_size=n, random_state=RANDOM_STATE))
