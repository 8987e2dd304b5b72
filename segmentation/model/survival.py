"""How long customers take to come back, counting those who have not come back yet.

Gaps between purchases are only seen for customers who have already returned: a history of one
year shows no gap longer than a year, and the customers who bought last month have not had time
to return at all. Taking the quantiles of the gaps that were seen (right-censoring ignored) makes
every return time shorter the shorter the history, and calls customers "lost" too early.

This module estimates the time to a customer's **first return** (from their first purchase day to
their second) from every customer:

- customers who came back contribute their first gap (an event);
- customers who bought on one day only contribute the time since that day, as *not back yet*
  (censored at their tenure).

The Kaplan–Meier estimator turns these into the share of customers who have come back by each
day, without assuming a shape, as far as the history follows enough customers (``measured_to``:
at least ``MIN_AT_RISK`` customers still under observation). Most customers of a marketplace
never return, so the curve does not reach 100% and a plain Kaplan–Meier median does not exist;
the share who *ever* return is not identified from a finite history either (on Olist the curve
still rises after two years). The terms are therefore stated for the customers who come back
within a **reference year** (``REFERENCE_DAYS``): of those, half return within the return time,
80% within the return window, 95% within the lost cut-off. A year is the marketing convention for
a returning customer, long enough to contain the rhythm of all but the slowest shops, and the
same for every history length, so the terms do not drift as the history grows.

When the history follows customers for less than the reference year, the curve is continued
beyond ``measured_to`` by a parametric mixture cure model (a share ``pi`` returns, after a
lognormal, Weibull or Lomax time; the best fit by likelihood), anchored to the Kaplan–Meier value
at ``measured_to``: only the unseen part is extrapolated, by the shape the seen part suggests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

REFERENCE_DAYS = 365
MIN_AT_RISK = 30  # customers under observation for the curve to count as measured at a day
AT_RISK_SHARE = 0.005  # ... or this share of the customers, whichever is more
QUANTILES = (0.5, 0.8, 0.95)


@dataclass(frozen=True)
class FirstReturns:
    """A histogram of first returns: ``n[i]`` customers came back for the first time ``days[i]``
    days after their first purchase day (read inside the engine, ``relations.FIRST_RETURNS_SELECT``),
    in increasing days."""

    days: tuple[int, ...] = ()
    n: tuple[int, ...] = ()

    @property
    def customers(self) -> int:
        return int(sum(self.n))

    @staticmethod
    def of(days, n) -> FirstReturns:
        d = np.asarray(days, dtype=np.float64)
        c = np.asarray(n, dtype=np.float64)
        keep = np.isfinite(d) & (d >= 1) & (c > 0)
        order = np.argsort(d[keep], kind="stable")
        return FirstReturns(tuple(int(x) for x in d[keep][order]), tuple(int(x) for x in c[keep][order]))


@dataclass(frozen=True, eq=False)
class ReturnCurve:
    """The share of customers back for the first time by each day 0..``REFERENCE_DAYS``."""

    share: np.ndarray  # cumulative share of all customers, index = day
    measured_to: int  # the curve is Kaplan–Meier up to this day, extrapolated after it
    tail: str  # the cure model that continues it beyond measured_to ("" when not needed)
    customers: int
    returned: int  # customers seen coming back

    @property
    def returning_share(self) -> float:
        """The share of customers who come back within the reference year."""
        return float(self.share[-1])

    def quantile(self, q: float) -> int:
        """The first day by which ``q`` of the customers who come back within the reference year have."""
        total = self.share[-1]
        return int(np.searchsorted(self.share, q * total - 1e-12, side="left"))


def kaplan_meier(event_days, event_n, censored_days, censored_n) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan–Meier from histograms: (distinct days, share returned by each day, customers at
    risk on each day). A customer censored on day t counts as at risk on day t."""
    ev_d = np.asarray(event_days, dtype=np.float64)
    ev_n = np.asarray(event_n, dtype=np.float64)
    ce_d = np.asarray(censored_days, dtype=np.float64)
    ce_n = np.asarray(censored_n, dtype=np.float64)
    days = np.unique(np.concatenate([ev_d, ce_d]))
    events = np.zeros(len(days))
    censored = np.zeros(len(days))
    np.add.at(events, np.searchsorted(days, ev_d), ev_n)
    np.add.at(censored, np.searchsorted(days, ce_d), ce_n)
    at_risk = np.cumsum((events + censored)[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, 0.0)
    returned = 1.0 - np.cumprod(1.0 - hazard)
    return days, returned, at_risk


# -- mixture cure models: a share pi returns, after a time with survival S(t) ----------------


def _lognormal(p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import log_ndtr

    mu, log_s = p
    s = np.exp(log_s)
    z = (np.log(d) - mu) / s
    return -0.5 * z * z - 0.5 * np.log(2 * np.pi) - np.log(s * d), log_ndtr(-z)


def _weibull(p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_k, log_l = p
    k = np.exp(log_k)
    z = np.exp(k * (np.log(d) - log_l))
    return log_k - log_l + (k - 1) * (np.log(d) - log_l) - z, -z


def _lomax(p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_a, log_s = p
    a = np.exp(log_a)
    lp = np.log1p(d / np.exp(log_s))
    return log_a - log_s - (a + 1) * lp, -a * lp


FAMILIES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "lognormal": _lognormal,
    "Weibull": _weibull,
    "Lomax": _lomax,
}


@dataclass(frozen=True)
class CureFit:
    family: str
    pi: float
    params: tuple[float, float]
    neg_log_likelihood: float

    def returned(self, t) -> np.ndarray:
        """The model's share of customers back by day ``t``."""
        d = np.maximum(np.asarray(t, dtype=np.float64), 0.5)
        _, log_s = FAMILIES[self.family](np.asarray(self.params), d)
        return self.pi * -np.expm1(log_s)


def fit_cure(days, is_event, weight, family: str) -> CureFit | None:
    """Maximum likelihood of a mixture cure model on (possibly censored) days; None if it fails."""
    from scipy.optimize import minimize

    d = np.maximum(np.asarray(days, dtype=np.float64), 0.5)
    e = np.asarray(is_event, dtype=bool)
    w = np.asarray(weight, dtype=np.float64)
    if not e.any():
        return None
    f = FAMILIES[family]
    centre = float(np.log(np.average(d[e], weights=w[e])))

    def nll(theta: np.ndarray) -> float:
        log_pi = -np.logaddexp(0.0, -theta[0])
        log_not = -np.logaddexp(0.0, theta[0])
        log_f, log_s = f(theta[1:], d)
        ll = np.where(e, log_pi + log_f, np.logaddexp(log_not, log_pi + log_s))
        return float(-(w * ll).sum())

    start = {"lognormal": [centre, 0.0], "Weibull": [0.0, centre], "Lomax": [0.5, centre]}[family]
    best = None
    with np.errstate(all="ignore"):
        for logit in (-3.0, 0.0, 3.0):
            res = minimize(nll, np.array([logit, *start]), method="L-BFGS-B", bounds=[(-20, 20), (-20, 20), (-20, 20)])
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
    if best is None:
        return None
    pi = float(1.0 / (1.0 + np.exp(-best.x[0])))
    return CureFit(family, pi, (float(best.x[1]), float(best.x[2])), float(best.fun))


def estimate(first: FirstReturns, waiting_days, waiting_n, reference_days: int = REFERENCE_DAYS) -> ReturnCurve:
    """The first-return curve of a shop: ``first`` are the customers who came back (their first
    gap), ``waiting_*`` a histogram of the one-time buyers' days since their purchase (not back yet)."""
    ev_d = np.asarray(first.days, dtype=np.float64)
    ev_n = np.asarray(first.n, dtype=np.float64)
    ce_d = np.asarray(waiting_days, dtype=np.float64)
    ce_n = np.asarray(waiting_n, dtype=np.float64)
    customers = int(ev_n.sum() + ce_n.sum())
    grid = np.arange(reference_days + 1, dtype=np.float64)
    if not len(ev_d):
        return ReturnCurve(np.zeros(len(grid)), 0, "", customers, 0)
    days, returned, at_risk = kaplan_meier(ev_d, ev_n, ce_d, ce_n)
    enough = at_risk >= max(MIN_AT_RISK, AT_RISK_SHARE * customers)
    measured_to = int(days[enough].max()) if enough.any() else int(days[0])
    measured_to = min(measured_to, reference_days)
    idx = np.searchsorted(days, grid, side="right") - 1
    share = np.where(idx >= 0, returned[np.maximum(idx, 0)], 0.0)
    tail = ""
    if measured_to < reference_days:
        all_d = np.concatenate([ev_d, ce_d])
        all_e = np.concatenate([np.ones(len(ev_d), dtype=bool), np.zeros(len(ce_d), dtype=bool)])
        all_w = np.concatenate([ev_n, ce_n])
        fits = [f for f in (fit_cure(all_d, all_e, all_w, name) for name in FAMILIES) if f is not None]
        at = share[measured_to]
        later = grid > measured_to
        if fits:
            best = min(fits, key=lambda f: f.neg_log_likelihood)
            tail = best.family
            share = np.where(later, at + best.returned(grid) - best.returned(measured_to), share)
        else:  # no model could be fitted: the curve stays where it was measured
            share = np.where(later, at, share)
    share = np.maximum.accumulate(np.clip(share, 0.0, 1.0))
    return ReturnCurve(share, measured_to, tail, customers, int(ev_n.sum()))
