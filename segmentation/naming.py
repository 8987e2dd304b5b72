"""Business names for RFM profiles.

One explicit grid maps (R, F, M) scores 1–5 to the classic RFM vocabulary. It is a table, not a
chain of if-rules, so every one of the 125 cells has exactly one name and no rule can shadow
another. F and M are combined into one FM score, ``min((F + M) // 2, F + 1)``: their mean rounded
down, and spend lifts it at most one step above frequency, so a single order is never
"frequent" however large it was. The grid is read by R (rows) and FM (columns).

A centroid is an average, so its scores are pulled towards the middle of the distribution: the
oldest clusters score R = 2 far more often than R = 1. The grid therefore treats R 1 and 2 alike
for low FM (Lost, Hibernating).

Clusters are named from their centroids, back in original units and scored against the customer
distribution; the quantile baseline scores each customer and reads the same grid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Ordered from most to least valuable; tables are printed in this order.
VOCABULARY: tuple[str, ...] = (
    "Champions",
    "Loyal Customers",
    "Potential Loyalists",
    "New Customers",
    "Promising",
    "Need Attention",
    "About To Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)

_C, _L, _PL, _N, _P = "Champions", "Loyal Customers", "Potential Loyalists", "New Customers", "Promising"
_NA, _S, _AR, _CL, _H, _X = (
    "Need Attention", "About To Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost",
)

# GRID[r][fm], r and fm in 1..5 (index 0 unused).
GRID: dict[int, tuple[str, ...]] = {
    5: (_N, _PL, _PL, _C, _C),
    4: (_P, _PL, _PL, _L, _C),
    3: (_S, _NA, _NA, _L, _L),
    2: (_X, _H, _AR, _AR, _CL),
    1: (_X, _H, _AR, _CL, _CL),
}

DIMENSIONS = ("recency", "frequency", "monetary")


def fm_score(f: int, m: int) -> int:
    return min((f + m) // 2, f + 1)


def name_for_scores(r: int, f: int, m: int) -> str:
    for s in (r, f, m):
        if not 1 <= s <= 5:
            raise ValueError(f"RFM scores are 1..5, got {(r, f, m)}")
    return GRID[r][fm_score(f, m) - 1]


def percentile(sorted_values: np.ndarray, value: float) -> float:
    """Share of customers strictly below ``value``, interpolated between distinct values.

    With 97% of customers at frequency 1, a centroid at exactly 1.0 is at the bottom (0.0),
    one at 1.3 is 30% of the way to the 97% who are below 2, and 2.0 is at 0.97.
    """
    distinct, first = np.unique(sorted_values, return_index=True)
    below = first / len(sorted_values)  # share strictly below each distinct value
    return float(np.interp(value, distinct, below, left=0.0, right=1.0))


def score(p: float) -> int:
    """A percentile in [0, 1] to a 1–5 score (quintiles)."""
    return int(min(5, max(1, 1 + np.floor(p * 5))))


def centroid_scores(centroid: Sequence[float], sorted_columns: Sequence[np.ndarray]) -> tuple[int, int, int]:
    """R, F, M scores of one centroid (recency, frequency, monetary in original units)."""
    r, f, m = (percentile(col, v) for col, v in zip(sorted_columns, centroid))
    return 6 - score(r), score(f), score(m)  # fewer days since the last order is better


@dataclass(frozen=True)
class ClusterName:
    cluster: int
    base: str  # the vocabulary name, the key into the playbook
    name: str  # unique within the model, e.g. "Lost — high spend"
    scores: tuple[int, int, int]


_LEVELS = {
    2: ("low", "high"),
    3: ("low", "mid", "high"),
    4: ("lowest", "low", "high", "highest"),
    5: ("lowest", "low", "mid", "high", "highest"),
}
_RECENCY_LEVELS = {
    2: ("recent", "lapsed"),
    3: ("recent", "fading", "lapsed"),
    4: ("most recent", "recent", "lapsed", "long lapsed"),
    5: ("most recent", "recent", "fading", "lapsed", "long lapsed"),
}


def _qualifier(dim: int, rank: int, n: int) -> str:
    if n > 5:
        return f"{DIMENSIONS[dim]} tier {rank + 1} of {n}"
    if dim == 0:
        return _RECENCY_LEVELS[n][rank]
    return f"{_LEVELS[n][rank]} {'spend' if dim == 2 else 'frequency'}"


def name_clusters(
    centroids: np.ndarray, scaled_centroids: np.ndarray, rfm: np.ndarray
) -> list[ClusterName]:
    """Name every cluster from its centroid; make names unique within the model.

    ``centroids`` are in original units (days, orders, money), ``scaled_centroids`` in the
    model's standardised space (used to find on which dimension same-named clusters differ
    most), ``rfm`` the customers' values the scores are measured against.
    """
    columns = [np.sort(rfm[:, j]) for j in range(3)]
    base = []
    for i, c in enumerate(centroids):
        s = centroid_scores(c, columns)
        base.append((i, name_for_scores(*s), s))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, b, _ in base:
        groups[b].append(i)
    names: dict[int, str] = {}
    for b, members in groups.items():
        if len(members) == 1:
            names[members[0]] = b
            continue
        spread = np.ptp(scaled_centroids[members], axis=0)
        dim = int(np.argmax(spread))
        order = sorted(members, key=lambda i: scaled_centroids[i, dim])
        for rank, i in enumerate(order):
            names[i] = f"{b} — {_qualifier(dim, rank, len(members))}"
    return [ClusterName(i, b, names[i], s) for i, b, s in base]


def vocabulary_rank(base: str) -> int:
    return VOCABULARY.index(base) if base in VOCABULARY else len(VOCABULARY)
