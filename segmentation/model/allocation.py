"""How many clusters each stratum gets: one each, then every further cluster where it lowers the
within-cluster sum of squares most (KMeans's own objective, or that of a target such as the
chance to buy again)."""

from __future__ import annotations

import numpy as np

from segmentation.model.geometry import _distinct_rows

ALLOCATION_SAMPLE = 50_000
_CAPPED = -1e300  # the gain of a stratum too small for one more cluster (below any real gain)  # customers per stratum used to decide where extra clusters go


def allocate(
    parts: list[np.ndarray],
    n_clusters: int,
    sizes: list[int] | None = None,
    targets: list[np.ndarray] | None = None,
    threads: int = 1,
    min_sizes: list[float] | None = None,
) -> list[int]:
    """Clusters per stratum: one each, then greedily where they lower the inertia (or, with
    ``targets``, the within-cluster sum of squares of the target) most.

    A stratum gets no more clusters than leave ``min_sizes`` customers (of its part) each on
    average; when no stratum may take one more, fewer than ``n_clusters`` are given.

    Lazy greedy: a stratum's current sum of squares bounds what one more cluster can gain
    there, so a stratum is only fitted when its bound could beat the best gain already
    measured; the result is the plain greedy's, with far fewer fits."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    ks = [1] * len(parts)
    extra = n_clusters - len(parts)
    if extra <= 0:
        return ks
    rng = np.random.default_rng(0)
    samples, sample_targets, scale = [], [], []
    sizes = sizes or [len(P) for P in parts]  # a stratum's inertia counts all its customers
    for i, (P, n) in enumerate(zip(parts, sizes)):
        rows = rng.choice(len(P), ALLOCATION_SAMPLE, replace=False) if len(P) > ALLOCATION_SAMPLE else None
        samples.append(P if rows is None else P[rows])
        if targets is not None:
            sample_targets.append(targets[i] if rows is None else targets[i][rows])
        scale.append(n / len(samples[-1]))

    def within(s: int, labels: np.ndarray | None) -> float:
        """The sum of squares inside the clusters (``labels``; None: one cluster), scaled to the stratum."""
        if targets is None:
            S = samples[s]
            return float(((S - S.mean(axis=0)) ** 2).sum()) * scale[s]
        t = sample_targets[s]
        if labels is None:
            return float(((t - t.mean()) ** 2).sum()) * scale[s]
        sums = np.bincount(labels, weights=t)
        counts = np.bincount(labels)
        return float((t * t).sum() - (sums**2 / np.maximum(counts, 1)).sum()) * scale[s]

    inertia = [[within(s, None)] for s in range(len(parts))]
    distinct: dict[int, int] = {}

    def gain(s: int) -> float:
        k = ks[s]
        if min_sizes is not None and (k + 1) * min_sizes[s] > len(parts[s]):
            return _CAPPED  # a further cluster would be smaller than a segment may be
        if s not in distinct:
            distinct[s] = _distinct_rows(parts[s], cap=n_clusters + 1)
        if k + 1 > distinct[s]:
            return -np.inf  # no more distinct profiles to split
        if len(inertia[s]) <= k:
            with threadpool_limits(limits=threads, user_api="openmp"):
                km = KMeans(n_clusters=k + 1, n_init=1, random_state=0).fit(samples[s])
            inertia[s].append(float(km.inertia_) * scale[s] if targets is None else within(s, km.labels_))
        return inertia[s][k - 1] - inertia[s][k]

    exact: list[float | None] = [None] * len(parts)
    for _ in range(extra):
        while True:
            keys = [e if e is not None else inertia[i][ks[i] - 1] for i, e in enumerate(exact)]
            s = int(np.argmax(keys))
            if exact[s] is not None:
                break
            exact[s] = gain(s)
        if exact[s] == _CAPPED:
            break  # every stratum is as split as its size allows
        if exact[s] == -np.inf:
            raise ValueError(
                f"only {sum(distinct.get(i, 1) for i in range(len(parts)))} distinct customer profiles, "
                f"too few for {n_clusters} clusters"
            )
        ks[s] += 1
        exact[s] = None
    return ks
