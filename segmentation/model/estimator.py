"""The clustering model: KMeans within the shop's recency bands and kinds of customer.

``SegmentModel`` is a scikit-learn clusterer by protocol: parameters in ``__init__`` (and
nothing else; ``get_params``, ``set_params`` and ``sklearn.base.clone`` work), learned state in
attributes ending with ``_`` set by ``fit``, ``labels_`` and ``fit_predict``, ``predict`` for new
data, validation at the edge of ``fit``, no environment reads. It does not inherit from
``BaseEstimator``: importing ``sklearn.base`` takes seconds, and a saved model predicts with
NumPy alone so that `segment customer` starts fast. Input is an ``(n, 3)`` array of recency
(days), purchase days (occasions) and monetary (total spend), and optionally each row's *kind*:
one-time buyer, repeat buyer, or flagged at risk by the churn rule (``kinds_of``); without kinds,
they are read from ``X`` (2+ purchase days: repeat) and nobody is at risk.

Features are ``log1p`` then standard scaling, as in the original analysis. Unlike a plain
KMeans, a cluster never mixes customers of different recency bands (active, lapsing, lapsed,
lost; the band cut-offs are the shop's return time, return window and lost cut-off, given as
``cutoffs``), nor, when there are enough clusters, different kinds: the customers are split
into those *strata* first and KMeans runs inside each. A plain KMeans on a shop where 97% buy
once puts every repeat buyer in one or two clusters whatever their recency (frequency dominates
the scaled space), and no true name fits such a cluster; and a cluster mixing customers the
churn rule flags with others could be named neither "At Risk" nor anything that leaves them out.

How many clusters each stratum gets: one each, then every further cluster goes to the stratum
where it lowers the within-cluster sum of squares most (KMeans's own objective), measured with a
fixed seed so that the split does not depend on ``random_state``. With fewer clusters than
strata, one-time and repeat buyers of a band are merged first (smallest first), then the
customers at risk with the rest of their band; bands are never merged (at least 4 clusters).

Every (band, kind) the training data lacked gets a *reserved* cluster of its own (no customers
at training), so a customer older than anyone seen in training is never compared with a more
active band's clusters. Without a purchase a customer's recency only grows, so their band only
gets older: scoring the same customers later can never move them into a more active band.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segmentation.model.allocation import allocate
from segmentation.model.geometry import FEATURES as GEOMETRY_FEATURES
from segmentation.model.geometry import RANDOM_STATE, Standardiser, absorb_small, feature_columns, nearest_own, rows_of
from segmentation.model.terms import recency_bands

# scikit-learn is imported where a model is fitted, not here: a saved model predicts with NumPy
# alone, so the commands that only read (`segment customer`, `segment predict`) start fast.

DEFAULT_K = 11
N_BANDS = 4
MIN_K = N_BANDS
MAX_K = 30  # more clusters than a marketer can act on, and slower to fit
MAX_SEED = 2**32 - 1  # NumPy's seeds
FEATURES = list(GEOMETRY_FEATURES)  # columns of the RFM frame the model reads
SMALL_STRATUM = 50_000  # customers x clusters under which a stratum gets more KMeans restarts
# KMeans is fitted on a stratified sample of at most this many customers, then everyone is
# scored; the scaler is fitted on everyone. See SegmentModel._sample.
FIT_SAMPLE = 200_000
# no segment smaller than this, nor than this share of the customers (a "segment" of 1 customer
# describes nobody): tiny kinds merge within their band, and KMeans splits a stratum only into
# clusters at least this big (fewer segments than K, said so, rather than degenerate ones)
MIN_SEGMENT = 25
MIN_SEGMENT_SHARE = 0.001
SCALER_CHUNK = 1 << 20  # rows per step when fitting the scaler (one pass, bounded temporaries)
PRIORITY_SHARE = 0.5  # of the sample, kept for strata without one-time buyers (repeat, at risk)
WHOLE_STRATUM = 2_000  # strata this small are always kept whole
ONE_TIME, REPEAT, AT_RISK = 0, 1, 2
N_KINDS = 3
# The churn rule (atrisk.py) only flags customers past the return time and not yet lost.
RISK_BANDS = (1, 2)
Stratum = tuple[int, tuple[int, ...]]  # (band, kinds)


def kinds_of(occasions, at_risk) -> np.ndarray:
    """Each customer's kind: at risk (by the churn rule), else repeat (2+ purchase days), else one-time."""
    kinds = (np.asarray(occasions) >= 2).astype(np.int8)  # REPEAT (1) or ONE_TIME (0): one byte each
    kinds[np.asarray(at_risk, dtype=bool)] = AT_RISK
    return kinds


PARAMS = ("n_clusters", "cutoffs", "random_state", "n_init", "max_fit", "n_threads", "lost")


class SegmentModel:
    """log1p → StandardScaler → KMeans inside each recency band and kind of customer."""

    _estimator_type = "clusterer"

    def __init__(
        self,
        n_clusters: int = DEFAULT_K,
        cutoffs: tuple[float, float, float] = (90, 180, 365),
        random_state: int = RANDOM_STATE,
        n_init: int = 10,
        max_fit: int | None = FIT_SAMPLE,
        n_threads: int = 1,
        lost: tuple[float, float] | None = None,
    ):
        self.n_clusters = n_clusters
        self.cutoffs = cutoffs
        self.lost = lost  # (one-time, repeat) buyers' lost cut-offs; None: cutoffs[-1] for both
        self.random_state = random_state
        self.n_init = n_init
        self.max_fit = max_fit  # customers KMeans is fitted on (a stratified sample); None: all
        self.n_threads = n_threads  # KMeans's OpenMP threads (see ``threads``)

    # -- scikit-learn's estimator protocol ----------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PARAMS}

    def set_params(self, **params: Any) -> SegmentModel:
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise ValueError(f"invalid parameters for SegmentModel: {sorted(unknown)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != type(self)().get_params()[k]}
        return f"SegmentModel({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit_predict(self, X: np.ndarray, y: None = None, kinds: np.ndarray | None = None) -> np.ndarray:
        return self.fit(X, kinds=kinds).labels_

    # -- strata ----------------------------------------------------------------------------
    def lost_cutoff(self, occasions) -> np.ndarray:
        """Each row's lost cut-off: ``lost`` of its kind (one-time, or repeat for 2+ purchase days)."""
        one, repeat = self.__dict__.get("lost") or (self.cutoffs[-1], self.cutoffs[-1])
        return np.where(np.asarray(occasions, dtype=np.float64) >= 2, float(repeat), float(one))

    def bands(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(X)
        return self._bands(X[:, 0], X[:, 1])

    def _bands(self, recency: np.ndarray, occasions: np.ndarray) -> np.ndarray:
        lost = self.__dict__.get("lost") or (self.cutoffs[-1], self.cutoffs[-1])
        return recency_bands(recency, occasions, self.cutoffs[0], self.cutoffs[1], lost)

    def strata(self, X: np.ndarray, kinds: np.ndarray) -> np.ndarray:
        """The stratum index of every row (after ``fit``)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return self.lookup_.astype(np.int16)[self.bands(X), np.asarray(kinds, dtype=np.intp)]

    def fit(
        self, X: Any, y: None = None, kinds: np.ndarray | None = None, target: np.ndarray | None = None
    ) -> SegmentModel:
        """Fit on ``X`` (recency, purchase days, spend: an ``(n, 3)`` array, or a frame with those
        columns, ``FEATURES``) and each row's kind (``kinds_of``; default: from ``X``, nobody at
        risk). ``y`` is ignored (scikit-learn's clusterer signature). ``target`` (optional, one
        number per row, e.g. the chance to buy again) decides where the clusters beyond one per
        stratum go: to the stratum where one more KMeans cluster separates the target most (its
        within-cluster sum of squares falls most); without it, where KMeans's own inertia falls
        most. ``X`` is read a million rows at a time and never copied whole: the standardised
        values of every customer are never held at once (9M customers: 220 MB less)."""
        cols = feature_columns(X)
        n = len(cols[0])
        if kinds is None:
            kinds = kinds_of(cols[1], np.zeros(n, dtype=bool))
        kinds = np.asarray(kinds)
        if kinds.shape != (n,) or kinds.min() < 0 or kinds.max() >= N_KINDS:
            raise ValueError("kinds must give every row's kind: 0 one-time, 1 repeat, 2 at risk")
        if len(self.cutoffs) != N_BANDS - 1 or not np.all(np.diff(self.cutoffs) > 0):
            raise ValueError(f"cutoffs must be 3 increasing day counts, got {self.cutoffs}")
        from sklearn.preprocessing import StandardScaler

        band = self._bands(cols[0], cols[1])
        self.min_size_ = max(MIN_SEGMENT, int(np.ceil(MIN_SEGMENT_SHARE * n)))
        fitted = StandardScaler()
        for start in range(0, n, SCALER_CHUNK):  # in blocks: its temporaries stay small
            fitted.partial_fit(np.log1p(rows_of(cols, slice(start, start + SCALER_CHUNK))))
        self.scaler_ = Standardiser(fitted.mean_, fitted.scale_)
        keys = self._choose_strata(band, kinds)
        if len(keys) > self.n_clusters:
            raise ValueError(f"{self.n_clusters} clusters cannot keep {len(keys)} recency bands apart")
        lookup = np.full((N_BANDS, N_KINDS), -1, dtype=np.int64)
        for i, (b, ks) in enumerate(keys):
            lookup[b, list(ks)] = i
        stratum = lookup.astype(np.int16)[band, kinds]
        members = [np.flatnonzero(stratum == s) for s in range(len(keys))]
        del stratum
        sampled = self.max_fit is not None and n > self.max_fit
        fit_on = self._sample(members, keys) if sampled else members
        self.fit_size_ = int(sum(len(m) for m in fit_on))
        parts = [self._standardised(cols, m) for m in fit_on]
        per = self._allocate(
            parts,
            [len(m) for m in members],
            None if target is None else [np.asarray(target, dtype=np.float64)[m] for m in fit_on],
        )
        # the floor in each stratum's fitted counts (a sample keeps small strata whole, large ones not)
        floors = [max(1.0, self.min_size_ * len(f) / max(len(m), 1)) for f, m in zip(fit_on, members)]
        del members, fit_on
        centers: list[np.ndarray] = []
        owner: list[int] = []
        for s, (P, k) in enumerate(zip(parts, per)):
            local_centers, _ = self._fit_stratum(P, k, floors[s])
            centers.extend(local_centers)
            owner.extend([s] * len(local_centers))
        del parts
        per = [owner.count(s) for s in range(len(keys))]  # after small clusters were absorbed
        reserved = []
        for b in range(N_BANDS):  # a reserved cluster for every (band, kind) not seen in training
            for kind in range(N_KINDS):
                if lookup[b, kind] < 0 and kind == AT_RISK and b not in RISK_BANDS:
                    continue  # the churn rule never flags anyone here
                if lookup[b, kind] < 0:
                    lookup[b, kind] = len(keys)
                    owner.append(len(keys))
                    keys.append((b, (kind,)))
                    reserved.append(len(centers))
                    centers.append(self.scaler_.transform(np.log1p([self._representative(b, kind)]))[0])
        for b in range(N_BANDS):  # (unreachable) at risk outside RISK_BANDS: the band's repeat buyers
            if lookup[b, AT_RISK] < 0:
                lookup[b, AT_RISK] = lookup[b, REPEAT]
        self.strata_ = tuple(keys)
        self.lookup_ = lookup
        self.cluster_centers_ = np.asarray(centers)
        self.center_stratum_ = np.asarray(owner, dtype=np.int64)
        self.clusters_per_stratum_ = tuple(int(k) for k in per)
        self.reserved_ = frozenset(reserved)
        # every row's nearest centre of its stratum, as ``predict`` gives it (K <= 30: 2 bytes a
        # customer): KMeans's own labels are not that once a small cluster was absorbed and the
        # centres moved to their members' means, and the segments described at training must be
        # the ones the served model assigns
        stratum_of = self.lookup_.astype(np.int16)
        self.labels_ = np.empty(n, dtype=np.int16)
        for start in range(0, n, SCALER_CHUNK):
            block = slice(start, start + SCALER_CHUNK)
            z = self._standardised(cols, block)
            self.labels_[block] = self._nearest(z, stratum_of[band[block], kinds[block]], np.int16)
        return self

    def _standardised(self, cols: tuple[np.ndarray, ...], where: slice | np.ndarray) -> np.ndarray:
        """Rows ``where`` of the features in the standardised space (as ``transform``, the same bits)."""
        Z = np.log1p(rows_of(cols, where))
        Z -= self.scaler_.mean_
        Z /= self.scaler_.scale_
        return Z

    def _sample(self, members: list[np.ndarray], keys: list[Stratum]) -> list[np.ndarray]:
        """A stratified sample of about ``max_fit`` customers: uniform inside every stratum (so
        KMeans inside it is unbiased), with strata of repeat buyers and customers at risk kept
        whole up to half the sample (they are few and the most valuable to separate), the rest
        shared by the strata with one-time buyers in proportion to their sizes, and strata under
        2,000 customers (or of a smaller share of a small sample) kept whole. The sample is fixed (seed 0): only KMeans's own seed varies."""
        assert self.max_fit is not None
        rng = np.random.default_rng(0)
        sizes = np.array([len(m) for m in members], dtype=np.float64)
        priority = np.array([ONE_TIME not in kinds for _, kinds in keys])
        pri_total, rest_total = sizes[priority].sum(), sizes[~priority].sum()
        pri_budget = min(pri_total, self.max_fit * PRIORITY_SHARE)
        rest_budget = self.max_fit - pri_budget
        whole = min(WHOLE_STRATUM, self.max_fit // (2 * len(members)))  # small strata: kept whole
        out = []
        for m, n, p in zip(members, sizes, priority):
            share = pri_budget / pri_total if p else (rest_budget / rest_total if rest_total else 1.0)
            quota = int(min(n, max(np.ceil(n * share), whole)))
            out.append(m if quota >= n else np.sort(rng.choice(m, quota, replace=False)))
        return out

    def _representative(self, band: int, kind: int) -> list[float]:
        """A typical profile for a reserved cluster: the middle of its band, one purchase day
        (two for repeat buyers and those at risk), the shop's typical spend."""
        occasions = 1.0 if kind == ONE_TIME else 2.0
        lost = float(self.lost_cutoff([occasions])[0])
        edges = [0.0, *map(float, self.cutoffs[:-1]), lost, lost * 1.5]
        recency = (edges[band] + edges[band + 1]) / 2
        monetary = float(np.expm1(self.scaler_.mean_[2]))
        return [recency, occasions, monetary]

    def _choose_strata(self, band: np.ndarray, kinds: np.ndarray) -> list[Stratum]:
        tally = np.bincount(band * N_KINDS + kinds, minlength=N_BANDS * N_KINDS)
        groups: dict[int, dict[tuple[int, ...], int]] = {
            b: {(k,): int(tally[b * N_KINDS + k]) for k in range(N_KINDS) if tally[b * N_KINDS + k]}
            for b in range(N_BANDS)
        }

        def pairs(allow_risk: bool) -> list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]:
            return [
                (n1 + n2, b, k1, k2)
                for b, g in groups.items()
                for k1, n1 in g.items()
                for k2, n2 in g.items()
                if k1 < k2 and (allow_risk or AT_RISK not in k1 + k2)
            ]

        def merge(b: int, k1: tuple[int, ...], k2: tuple[int, ...]) -> None:
            groups[b][tuple(sorted(k1 + k2))] = groups[b].pop(k1) + groups[b].pop(k2)

        # a kind too small for a segment of its own joins the band's other kind of buyer (never
        # those at risk: their segments are named for the flag)
        while tiny := [
            (total, b, k1, k2)
            for total, b, k1, k2 in pairs(False)
            if min(groups[b][k1], groups[b][k2]) < self.min_size_
        ]:
            merge(*min(tiny)[1:])
        # merge one-time with repeat buyers first (smallest pair first), then those at risk with
        # the rest of their band; never two bands
        while sum(len(g) for g in groups.values()) > self.n_clusters:
            candidates = pairs(False) or pairs(True)
            if not candidates:
                break
            merge(*min(candidates)[1:])
        return [(b, k) for b in range(N_BANDS) for k in sorted(groups[b])]

    def _allocate(
        self, parts: list[np.ndarray], sizes: list[int] | None = None, targets: list[np.ndarray] | None = None
    ) -> list[int]:
        sizes = sizes or [len(P) for P in parts]
        floors = [max(1.0, self.min_size_ * len(P) / max(n, 1)) for P, n in zip(parts, sizes)]
        return allocate(parts, self.n_clusters, sizes, targets, self.threads(), min_sizes=floors)

    def _fit_stratum(self, P: np.ndarray, k: int, floor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        if k == 1:
            return P.mean(axis=0, keepdims=True), np.zeros(len(P), dtype=np.int64)
        with threadpool_limits(limits=self.threads(), user_api="openmp"):
            km = KMeans(n_clusters=k, n_init=self.restarts(len(P), k), random_state=self.random_state).fit(P)
        centers, labels = absorb_small(P, km.cluster_centers_, km.labels_, floor)
        k = len(centers)
        order = np.argsort(-centers[:, 2], kind="stable")  # higher spend first
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k)
        return centers[order], rank[labels]

    def threads(self) -> int:
        """KMeans's OpenMP threads: ``n_threads`` (at least 1). One thread by default: on a shared
        machine (the bot answering Slack while it retrains, DuckDB reading) OpenMP's busy-waiting
        threads slow down many times over when a core is taken, while one thread costs at most the
        second core's share on an idle machine. Training passes ``SEGMENT_THREADS``."""
        return max(1, int(self.n_threads or 1))

    def restarts(self, n: int, k: int) -> int:
        """KMeans restarts for a stratum of ``n`` customers and ``k`` clusters: ``n_init``, or
        more for small strata (up to 100), whose many equally good local optima would otherwise
        let the seed decide their split; the extra work stays under a million distances."""
        if n * k > SMALL_STRATUM:
            return self.n_init
        return max(self.n_init, min(100, 1_000_000 // max(n * k, 1)))

    # -- predicting ------------------------------------------------------------------------
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Raw values to the standardised log space the clusters live in."""
        return (np.log1p(np.asarray(X, dtype=np.float64)) - self.scaler_.mean_) / self.scaler_.scale_

    def predict(self, X: np.ndarray, kinds: np.ndarray) -> np.ndarray:
        """The nearest centre of each row's own stratum (squared Euclidean distance, first
        minimum on ties), in plain NumPy and in bounded memory."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return self._nearest(self.transform(X), self.strata(X, kinds))

    def _nearest(self, Z: np.ndarray, stratum: np.ndarray, dtype: type = np.int64) -> np.ndarray:
        """Each row's first nearest centre of its own stratum (``geometry.nearest_own``)."""
        return nearest_own(Z, stratum, self.cluster_centers_, self.center_stratum_, len(self.strata_), dtype)

    def predict_one(self, r: float, f: float, m: float, kind: int) -> int:
        band = int(self.bands(np.array([[r, f, m]], dtype=np.float64))[0])
        own = self._own[self.lookup_[band, kind]]
        z0 = (np.log1p(r) - self.scaler_.mean_[0]) / self.scaler_.scale_[0]
        z1 = (np.log1p(f) - self.scaler_.mean_[1]) / self.scaler_.scale_[1]
        z2 = (np.log1p(m) - self.scaler_.mean_[2]) / self.scaler_.scale_[2]
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
        """The saved model: everything to predict, not the training rows' ``labels_``."""
        state = dict(self.__dict__)
        state.pop("_own_cache", None)
        state.pop("labels_", None)
        return state

    @property
    def centroids_(self) -> np.ndarray:
        """Cluster centres back in original units (days, purchase days, money)."""
        return np.expm1(self.scaler_.inverse_transform(self.cluster_centers_))

    def band_of(self, cluster: int) -> int:
        return self.strata_[self.center_stratum_[cluster]][0]
