"""BG/NBD's probability that a customer is still "alive", as an extra signal beside the at-risk rule.

The BG/NBD model (Fader, Hardie & Lee, "Counting your customers the easy way", 2005) is the
field's standard for repeat buyers: each customer buys at their own Poisson rate and, after
each purchase, drops out with their own probability. Fitted by maximum likelihood on purchase
days (x repeat purchase days, the time t_x of the last one after the first, the age T), it gives
P(alive) for every customer. It says nothing about one-time buyers (x = 0 gives P(alive) = 1),
and it can only estimate dropout where enough customers came back, so it is used only as a
reported extra signal for repeat buyers, and only when the fit is usable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln

MIN_REPEAT_BUYERS = 200
MIN_DROPOUT = 0.005  # below this mean dropout chance P(alive) is ~1 for everyone: no signal


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        ratio = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x)))
        odds = np.where(x > 0, self.a / (self.b + np.maximum(x, 1) - 1) * ratio, 0.0)
        return 1.0 / (1.0 + odds)

    def p_purchase(self, x, t_x, T, t: float) -> np.ndarray:
        """P(at least one purchase in the next ``t`` days): alive, and the Poisson rate (gamma
        posterior with shape r + x, rate alpha + T) gives a purchase; no purchase, no dropout."""
        x = np.asarray(x, dtype=np.float64)
        T = np.asarray(T, dtype=np.float64)
        none_if_alive = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + t)))
        return self.p_alive(x, t_x, T) * (1.0 - none_if_alive)

    def expected(self, x, t_x, T, t: float) -> np.ndarray:
        """Expected purchases in the next ``t`` days (Fader, Hardie & Lee 2005, eq. 10)."""
        from scipy.special import hyp2f1

        x = np.asarray(x, dtype=np.float64)
        t_x = np.asarray(t_x, dtype=np.float64)
        T = np.asarray(T, dtype=np.float64)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        with np.errstate(all="ignore"):
            h = hyp2f1(r + x, b + x, a + b + x - 1, z)
            head = (a + b + x - 1) / (a - 1) * (1 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * h)
            odds = np.where(
                x > 0, a / (b + np.maximum(x, 1) - 1) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))), 0.0
            )
        out = head / (1 + odds)
        # where the hypergeometric series fails (a <= 1 or z near 1) fall back on P(a purchase)
        bad = ~np.isfinite(out) | (out < 0)
        if bad.any():
            out = np.where(bad, self.p_purchase(x, t_x, T, t), out)
        return out


def _neg_ll(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> float:
    r, alpha, a, b = np.exp(log_params)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    ll = a1 + a2 + np.logaddexp(a3, a4)
    return float(-(w * ll).sum())


def history(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) in days from the RFM frame: repeat purchase days, time of the last one after
    the first, and the customer's age at the snapshot."""
    occ = frame["occasions"].to_numpy(np.float64)
    x = occ - 1
    t_x = np.nan_to_num(frame["gap"].to_numpy(np.float64), nan=0.0) * x
    T = frame["recency"].to_numpy(np.float64) + t_x
    return x, t_x, T


def fit(frame: pd.DataFrame, strict: bool = True) -> tuple[BGNBD | None, str]:
    """The fitted model, or None and why it is not usable here. ``strict=False`` (a reference
    to compare with) keeps any fit that converged, even one that can hardly tell who dropped out."""
    x, t_x, T = history(frame)
    repeaters = int((x > 0).sum())
    if repeaters < MIN_REPEAT_BUYERS:
        return None, f"only {repeaters:,} repeat buyers; BG/NBD needs {MIN_REPEAT_BUYERS}+ to estimate dropout"
    rows, w = np.unique(np.column_stack([x, np.round(t_x, 3), T]), axis=0, return_counts=True)
    res = minimize(
        _neg_ll,
        x0=np.log([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0]),
        args=(rows[:, 0], rows[:, 1], rows[:, 2], w.astype(np.float64)),
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0)] * 4,
    )
    params = np.exp(res.x)
    if not np.all(np.isfinite(params)) or (strict and (not res.success or np.any(np.abs(res.x) >= 11.9))):
        return None, "the fit did not converge to usable parameters"
    model = BGNBD(*map(float, params))
    dropout = model.a / (model.a + model.b)
    if strict and dropout < MIN_DROPOUT:
        return None, (
            f"the fit on {repeaters:,} repeat buyers puts the chance of dropping out after a purchase at "
            f"{dropout:.2%}: BG/NBD sees almost no one lapse in this history, so its P(alive) cannot tell "
            "the lapsed from the alive"
        )
    return model, "fitted"
