"""The standardised space the clusters live in: the fitted scaler, distinct profiles, and silhouette on a fixed sample."""

from __future__ import annotations

import numpy as np

RANDOM_STATE = 42  # the product's fixed seed: KMeans's default and the silhouette sample


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
