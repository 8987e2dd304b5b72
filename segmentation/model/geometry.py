"""The standardised space the clusters live in: the fitted scaler, distinct profiles, and silhouette on a fixed sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RANDOM_STATE = 42  # the product's fixed seed: KMeans's default and the silhouette sample
FEATURES = ("recency", "occasions", "monetary")  # the columns of the RFM frame the model reads


def feature_columns(X: Any, features: Sequence[str] = FEATURES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X``'s recency, purchase days and spend as three 1-D arrays, without copying them: the
    columns of an ``(n, 3)`` array, or of a frame by name (``features``)."""
    if hasattr(X, "columns"):
        missing = [c for c in features if c not in X.columns]
        if missing or not len(X):
            raise ValueError(f"X must be a non-empty frame with the columns {', '.join(features)}")
        return tuple(np.asarray(X[c].to_numpy()) for c in features)  # type: ignore[return-value]
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 3 or not len(X):
        raise ValueError("X must be a non-empty (n, 3) array of recency, occasions, monetary")
    return X[:, 0], X[:, 1], X[:, 2]


def rows_of(cols: tuple[np.ndarray, ...], where: slice | np.ndarray) -> np.ndarray:
    """Rows ``where`` (a slice or row numbers) of the feature columns as one float64 ``(m, 3)`` block."""
    n = len(range(len(cols[0]))[where]) if isinstance(where, slice) else len(where)
    out = np.empty((n, len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        out[:, j] = c[where]
    return out


class Standardiser:
    """The fitted scaler: StandardScaler's ``mean_`` and ``scale_`` without scikit-learn."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)

    def transform(self, Z: np.ndarray) -> np.ndarray:
        return (np.asarray(Z, dtype=np.float64) - self.mean_) / self.scale_

    def inverse_transform(self, Zs: np.ndarray) -> np.ndarray:
        return np.asarray(Zs, dtype=np.float64) * self.scale_ + self.mean_


def _distinct_rows(P: np.ndarray, cap: int) -> int:
    """Number of distinct rows, counting only up to ``cap`` when a sample already shows that many."""
    head = P[:10_000]
    n = len(np.unique(head, axis=0))
    if n >= cap or len(P) <= len(head):
        return n
    return len(np.unique(P, axis=0))


def silhouette_rows(n: int, sample_size: int = 5_000) -> np.ndarray:
    """The fixed random rows silhouette is measured on: those ``silhouette_score(sample_size=…,
    random_state=RANDOM_STATE)`` would draw (the full score is quadratic in customers)."""
    return np.random.RandomState(RANDOM_STATE).permutation(n)[: min(sample_size, n)]


def silhouette(Z: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of standardised rows ``Z`` (a sample, see ``silhouette_rows``) and their labels."""
    if len(np.unique(labels)) < 2:
        return None
    from sklearn import config_context
    from sklearn.metrics import silhouette_score

    with config_context(working_memory=64):  # MB per chunk of distances (default 1 GB)
        return float(silhouette_score(Z, labels))


def absorb_small(
    P: np.ndarray, centers: np.ndarray, labels: np.ndarray, min_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """KMeans's clusters with every one smaller than ``min_size`` (a handful of outliers)
    absorbed, smallest first, by the nearest of the others, whose centre becomes its members'
    mean; the other splits stay as KMeans made them."""
    centers, labels = np.array(centers, dtype=np.float64), np.asarray(labels, dtype=np.int64).copy()
    while len(centers) > 1:
        counts = np.bincount(labels, minlength=len(centers))
        small = int(np.argmin(counts))
        if counts[small] >= min_size:
            break
        rest = [c for c in range(len(centers)) if c != small]
        members = labels == small
        if members.any():
            d = ((P[members][:, None, :] - centers[rest][None, :, :]) ** 2).sum(axis=2)
            labels[members] = np.asarray(rest)[d.argmin(axis=1)]
        centers = centers[rest]
        labels = np.searchsorted(np.asarray(rest), labels)  # renumber 0..k-2
        for c in range(len(centers)):
            centers[c] = P[labels == c].mean(axis=0)
    return centers, labels


NEAREST_ROWS = 65_536  # rows per block of distances to the centres


def nearest_own(
    Z: np.ndarray, stratum: np.ndarray, centers: np.ndarray, owner: np.ndarray, strata: int, dtype: type = np.int64
) -> np.ndarray:
    """Each row's first nearest centre (squared Euclidean distance) among those whose ``owner``
    is the row's ``stratum``. Block by block: distances to every centre, those of other strata
    set to infinity, so that the first minimum is the first nearest of the row's own. The
    blocks reuse two buffers: fresh temporaries of this size fault their pages in again at every
    block (3.7x slower inside training's fit). The sum runs over the coordinates in order, as
    ``sum`` does."""
    out: np.ndarray = np.empty(len(Z), dtype=dtype)
    foreign = owner[None, :] != np.arange(strata)[:, None]  # [stratum, centre]
    size = min(NEAREST_ROWS, len(Z))
    d, term = np.empty((size, len(centers))), np.empty((size, len(centers)))
    mask = np.empty((size, len(centers)), dtype=bool)
    for start in range(0, len(Z), NEAREST_ROWS):
        z = Z[start : start + NEAREST_ROWS]
        n = len(z)
        np.subtract(z[:, 0, None], centers[None, :, 0], out=d[:n])
        np.square(d[:n], out=d[:n])
        for j in range(1, centers.shape[1]):
            np.subtract(z[:, j, None], centers[None, :, j], out=term[:n])
            np.square(term[:n], out=term[:n])
            d[:n] += term[:n]
        np.take(foreign, stratum[start : start + n], axis=0, out=mask[:n])
        np.copyto(d[:n], np.inf, where=mask[:n])
        out[start : start + n] = d[:n].argmin(axis=1)
    return out
