"""How well a score ranks who buys again (AUC, with DeLong's interval for a difference) and how well a chance is calibrated (deciles, expected calibration error, Brier score)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECILES = 10  # calibration groups


@dataclass(frozen=True)
class Decile:
    customers: int
    predicted: float
    observed: float


@dataclass(frozen=True)
class Calibration:
    deciles: tuple[Decile, ...]
    ece: float  # expected calibration error: the customer-weighted mean |observed - predicted| over deciles
    brier: float
    brier_base_rate: float  # the base rate (in hindsight) predicted for everyone
    brier_bgnbd: float | None  # BG/NBD's P(a purchase within the horizon)
    mean_predicted: float
    observed: float


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when only one outcome occurs."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(score, dtype=np.float64)))


def auc_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float] | None:
    """AUC(a) - AUC(b) on the same customers, with its 95% interval (DeLong's method, in the fast
    form of Sun & Xu 2014; ties count half)."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    m, n = int(y.sum()), int((~y).sum())
    if not m or not n:
        return None
    scores = np.vstack([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)])
    aucs, v10, v01 = [], [], []
    for sc in scores:
        tz = rankdata(sc)
        tx = rankdata(sc[y])
        ty = rankdata(sc[~y])
        aucs.append((tz[y].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[y] - tx) / n)
        v01.append(1.0 - (tz[~y] - ty) / m)
    s10 = np.cov(np.vstack(v10)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01)) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    return diff, diff - 1.959964 * se, diff + 1.959964 * se


def calibration(y: np.ndarray, p: np.ndarray, bgnbd_p: np.ndarray | None = None) -> Calibration:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    deciles = []
    ece = 0.0
    for part in np.array_split(order, DECILES):
        if not len(part):
            continue
        d = Decile(len(part), float(p[part].mean()), float(y[part].mean()))
        deciles.append(d)
        ece += len(part) * abs(d.observed - d.predicted)
    base = float(y.mean()) if len(y) else 0.0
    return Calibration(
        tuple(deciles),
        ece / max(len(y), 1),
        float(np.mean((p - y) ** 2)),
        float(np.mean((base - y) ** 2)),
        None if bgnbd_p is None else float(np.mean((np.asarray(bgnbd_p) - y) ** 2)),
        float(p.mean()) if len(p) else 0.0,
        base,
    )
