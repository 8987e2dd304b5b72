"""The chance that a customer buys again within a horizon, learned from the shop's own past.

At earlier cut-off days of the shop's history, every customer's recency, purchase days, spend,
usual gap and tenure are known, and so is whether they bought again in the ``horizon`` days
after the cut-off (``relations.windows_select``). Two logistic regressions, one for one-time
buyers and one for repeat buyers (they come back for different reasons, at different rates),
fitted on the stacked windows, give P(buys again within the horizon) for any customer today.
Logistic regression is the field's simplest calibrated model, and it compiles to a handful of
SQL expressions (``ChanceModel.sql``), so digests score it where the data lives.

Each part chooses its inputs from a few candidate sets, and how strongly to shrink them, by what
predicts the shop's own latest window best (log-loss, fitted on the earlier windows only), then
is refitted on all windows: a shop where spend says nothing about returning does not get a spend
term, and a dozen repeat buyers do not teach a steep curve. The inputs (R recency,
O purchase days, M spend, T tenure, G usual gap, S = T - R the span of the purchase days):

- ``r`` = ln(1 + R), ``r2``, ``r3`` its powers; ``m`` = ln(1 + M / O), spend per purchase day;
- repeat buyers also ``o`` = ln O, ``t`` = ln(1 + T), ``or`` = o·r, ``g`` = ln(1 + G),
  ``alive`` = (O - 1)·(ln(1 + T) - ln(1 + S)), the exponent of BG/NBD's odds of having dropped
  out (a buyer of many purchase days silent for long relative to their span is likelier gone),
  and ``due`` = R / (1 + G), how many of their own usual gaps they are overdue.

Every input is clipped to the range seen in training, so a tenure longer than any in the past
windows is not extrapolated. NumPy evaluates the same expressions in the same order as the SQL
(each term added left to right), so both give the same number.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from segmentation.model.chunks import ROWS, by_rows

MIN_ROWS = 50  # fewer customer-windows than this teach a part nothing: it predicts their share


# -- the inputs, in NumPy and in SQL ----------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    recency: np.ndarray
    occasions: np.ndarray
    monetary: np.ndarray
    tenure: np.ndarray
    gap: np.ndarray  # NaN for one purchase day

    # the logarithms several inputs share, worked out once per set of rows (9M customers: each
    # is a pass over 75 MB); the same operations as before, so the same bits
    @functools.cached_property
    def ln_recency(self) -> np.ndarray:
        return _ln1(self.recency)

    @functools.cached_property
    def ln_occasions(self) -> np.ndarray:
        return np.log(self.occasions)

    @functools.cached_property
    def ln_tenure(self) -> np.ndarray:
        return _ln1(self.tenure)

    @functools.cached_property
    def gap0(self) -> np.ndarray:
        return np.nan_to_num(self.gap, nan=0.0)

    def rows(self, keep: np.ndarray) -> Inputs:
        return Inputs(self.recency[keep], self.occasions[keep], self.monetary[keep], self.tenure[keep], self.gap[keep])


PREDICT_ROWS = ROWS  # rows whose chance is worked out at once (``ChanceModel.predict``)


def _ln1(x: np.ndarray) -> np.ndarray:
    return np.log(1.0 + x)  # as SQL's LN(1 + x), not log1p, so both agree to the last bit


NUMPY: dict[str, Callable[[Inputs], np.ndarray]] = {
    "r": lambda x: x.ln_recency,
    "r2": lambda x: x.ln_recency * x.ln_recency,
    "r3": lambda x: x.ln_recency * x.ln_recency * x.ln_recency,
    "m": lambda x: _ln1(x.monetary / x.occasions),
    "o": lambda x: x.ln_occasions,
    "t": lambda x: x.ln_tenure,
    "or": lambda x: x.ln_occasions * x.ln_recency,
    "g": lambda x: _ln1(x.gap0),
    "alive": lambda x: (x.occasions - 1.0) * (x.ln_tenure - _ln1(x.tenure - x.recency)),
    "due": lambda x: x.recency / (1.0 + x.gap0),
}


def _sql_inputs(recency: str, tenure: str) -> dict[str, str]:
    r = f"LN(1 + {recency})"
    occ = "CAST(occasions AS DOUBLE)"
    return {
        "r": r,
        "r2": f"{r} * {r}",
        "r3": f"{r} * {r} * {r}",
        "m": f"LN(1 + CAST(monetary AS DOUBLE) / {occ})",
        "o": f"LN({occ})",
        "t": f"LN(1 + {tenure})",
        "or": f"LN({occ}) * {r}",
        "g": "LN(1 + COALESCE(gap, 0))",
        "alive": f"({occ} - 1) * (LN(1 + {tenure}) - LN(1 + ({tenure} - {recency})))",
        "due": f"{recency} / (1 + COALESCE(gap, 0))",
    }


# Candidate inputs of each part, simplest first (chosen on the latest window, ``fit``).
ONE_TIME_CANDIDATES: tuple[tuple[str, ...], ...] = (("r", "r2", "r3"), ("r", "r2", "r3", "m"))
REPEAT_BASE = ("r", "r2", "r3", "o", "t", "or", "g")
REPEAT_CANDIDATES: tuple[tuple[str, ...], ...] = (
    REPEAT_BASE,
    (*REPEAT_BASE, "m"),
    (*REPEAT_BASE, "alive"),
    (*REPEAT_BASE, "due"),
    (*REPEAT_BASE, "m", "alive"),
    (*REPEAT_BASE, "m", "due"),
    (*REPEAT_BASE, "alive", "due"),
    (*REPEAT_BASE, "m", "alive", "due"),
)


def span_of(occasions, gap) -> np.ndarray:
    """Days from the first purchase day to the last: the usual gap times the gaps (as the SQL's
    COALESCE(gap * (occasions - 1), 0))."""
    occ, g = np.asarray(occasions, dtype=np.float64), np.asarray(gap, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where((occ >= 2) & ~np.isnan(g), g * (occ - 1.0), 0.0)


def tenure_of(recency, occasions, gap) -> np.ndarray:
    """Days since the first purchase: recency plus the span of the purchase days."""
    return np.asarray(recency, dtype=np.float64) + span_of(occasions, gap)


def _num(x: float) -> str:
    """A double literal every engine reads exactly (17 significant digits)."""
    return f"{float(x):.17e}"


@dataclass(frozen=True)
class Part:
    """One logistic regression: z = intercept + Σ coef·clip(input, lo, hi)."""

    inputs: tuple[str, ...]
    intercept: float
    coef: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    rows: int
    returned: int

    def z(self, x: Inputs) -> np.ndarray:
        z = np.full(np.shape(x.recency), self.intercept, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, c, lo, hi in zip(self.inputs, self.coef, self.lo, self.hi):
                term = np.minimum(np.maximum(NUMPY[name](x), lo), hi)  # a new array: the cached ones stay
                term *= c
                z += term
        return z

    def sql(self, recency: str, tenure: str) -> str:
        exprs = _sql_inputs(recency, tenure)
        z = _num(self.intercept)
        for name, c, lo, hi in zip(self.inputs, self.coef, self.lo, self.hi):
            z = f"{z} + {_num(c)} * LEAST(GREATEST({exprs[name]}, {_num(lo)}), {_num(hi)})"
        return z

    def as_json(self) -> dict:
        return {
            "inputs": list(self.inputs),
            "intercept": self.intercept,
            "coef": list(self.coef),
            "rows": self.rows,
            "returned": self.returned,
        }


@dataclass(frozen=True)
class ChanceModel:
    """P(buys again within ``horizon`` days): the one-time part for one purchase day, the repeat
    part for two or more."""

    horizon: int
    one_time: Part
    repeat: Part
    cutoffs: tuple[dt.date, ...]  # the windows it learned from

    @property
    def rows(self) -> int:
        return self.one_time.rows + self.repeat.rows

    @property
    def base_rate(self) -> float:
        return (self.one_time.returned + self.repeat.returned) / self.rows if self.rows else 0.0

    def predict(self, recency, occasions, monetary, tenure, gap) -> np.ndarray:
        """The chance for each row, evaluated ``PREDICT_ROWS`` rows at a time: its inputs'
        logarithms and terms are about ten arrays of the rows evaluated (9.3M customers: 0.7 GB
        at once, the training's peak), and every row's value is the same whatever the chunk."""
        columns = [np.asarray(v) for v in (recency, occasions, monetary, tenure, gap)]
        return by_rows(self._predict, columns, np.float64, PREDICT_ROWS)

    def _predict(self, recency, occasions, monetary, tenure, gap) -> np.ndarray:
        x = Inputs(*(np.asarray(v, dtype=np.float64) for v in (recency, occasions, monetary, tenure, gap)))
        repeat = x.occasions >= 2
        if repeat.all():  # one part only when one suffices (a lookup is one customer)
            z = self.repeat.z(x)
        elif not repeat.any():
            z = self.one_time.z(x)
        else:
            # the part of the fewer rows on a copy of those rows only (a marketplace's repeat
            # buyers are 3%), the other on every row in place: no copy of most of the inputs
            few = repeat if 2 * int(repeat.sum()) <= len(repeat) else ~repeat
            most, other = (self.one_time, self.repeat) if few is repeat else (self.repeat, self.one_time)
            z = most.z(x)
            z[few] = other.z(x.rows(few))
        return 1 / (1 + np.exp(-z))

    def now_and_right_after(self, recency: float, occasions: float, monetary: float, gap: float) -> tuple[float, float]:
        """``now`` and ``right_after`` of one customer, in one evaluation (two ages of one row)."""
        p = self.now([recency, 0.0], [occasions] * 2, [monetary] * 2, [gap] * 2)
        return float(p[0]), float(p[1])

    def now(self, recency, occasions, monetary, gap) -> np.ndarray:
        """The chance today, from a customer's RFM row (tenure = recency + span)."""
        return self.predict(recency, occasions, monetary, tenure_of(recency, occasions, gap), gap)

    def right_after(self, recency, occasions, monetary, gap) -> np.ndarray:
        """The chance the same customer had on the day of their last order (recency 0)."""
        return self.now(np.zeros(np.shape(occasions)), occasions, monetary, gap)

    def sql(self, recency: str = "recency", tenure: str | None = None) -> str:
        """The chance as one SQL expression over columns ``occasions``, ``monetary``, ``gap``
        and the given recency and tenure expressions (default: recency plus the span)."""
        rec = f"CAST({recency} AS DOUBLE)"
        ten = tenure or f"({rec} + COALESCE(gap * (CAST(occasions AS DOUBLE) - 1), 0))"
        z = f"CASE WHEN occasions >= 2 THEN {self.repeat.sql(rec, ten)} ELSE {self.one_time.sql(rec, ten)} END"
        return f"(1 / (1 + EXP(-({z}))))"

    def sql_right_after(self) -> str:
        """``sql`` for the day of the last order: recency 0, tenure the span."""
        return self.sql(recency="0", tenure="COALESCE(gap * (CAST(occasions AS DOUBLE) - 1), 0)")

    def as_json(self) -> dict:
        return {
            "horizon_days": self.horizon,
            "learned_from": [c.isoformat() for c in self.cutoffs],
            "rows": self.rows,
            "base_rate": self.base_rate,
            "one_time": self.one_time.as_json(),
            "repeat": self.repeat.as_json(),
        }


# -- fitting -----------------------------------------------------------------------------------


def _matrix(x: Inputs, inputs: Sequence[str]) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.column_stack([NUMPY[name](x) for name in inputs]) if inputs else np.zeros((len(x.recency), 0))


def _constant(inputs: Sequence[str], y: np.ndarray, prior: float) -> Part:
    n, pos = len(y), int(y.sum())
    rate = min(max((pos + prior) / (n + 1.0), 1e-6), 1 - 1e-6)  # smoothed towards the overall share
    zeros = (0.0,) * len(inputs)
    return Part(tuple(inputs), float(np.log(rate / (1 - rate))), zeros, zeros, zeros, n, pos)


def _fit_part(X: np.ndarray, y: np.ndarray, inputs: Sequence[str], prior: float, strength: float = 1.0) -> Part:
    n, pos = len(y), int(y.sum())
    if n < MIN_ROWS or pos == 0 or pos == n:
        return _constant(inputs, y, prior)
    from sklearn.linear_model import LogisticRegression

    lo, hi = X.min(axis=0), X.max(axis=0)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant input carries nothing
    lr = LogisticRegression(C=strength, max_iter=2000).fit((X - mean) / scale, y)
    coef = lr.coef_[0] / scale
    intercept = float(lr.intercept_[0] - (coef * mean).sum())
    return Part(tuple(inputs), intercept, tuple(map(float, coef)), tuple(map(float, lo)), tuple(map(float, hi)), n, pos)


def _log_loss(part: Part, x: Inputs, y: np.ndarray) -> float:
    p = np.clip(1 / (1 + np.exp(-part.z(x))), 1e-9, 1 - 1e-9)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


STRENGTHS = (1.0, 0.05)  # inverse L2 penalty on standardised inputs: as fitted, or shrunk towards the share


def _choose(x: Inputs, y: np.ndarray, latest: np.ndarray, candidates, prior: float) -> Part:
    """The candidate inputs and penalty that predict the latest window best when fitted on the
    earlier ones, refitted on every window (the simplest, least shrunk one when there is nothing to
    hold out). A small part (a marketplace's few repeat buyers) is shrunk rather than left to
    extrapolate from a dozen customers."""
    best, strength = candidates[0], STRENGTHS[0]
    held = latest
    if held.any() and (~held).sum() >= MIN_ROWS and 0 < y[held].sum() < held.sum():
        early = x.rows(~held)
        late = x.rows(held)
        scores = []
        for inputs in candidates:
            X = _matrix(early, inputs)
            for c in STRENGTHS:
                part = _fit_part(X, y[~held], inputs, prior, c)
                scores.append((_log_loss(part, late, y[held]), inputs, c))
        _, best, strength = min(scores, key=lambda s: s[0])
    return _fit_part(_matrix(x, best), y, best, prior, strength)


def fit(
    recency, occasions, monetary, tenure, gap, returned, cutoff, horizon: int, cutoffs: Sequence[dt.date]
) -> ChanceModel:
    """Fit on customer-windows: their numbers as of a cut-off (``cutoff``, one of ``cutoffs``,
    the latest first) and whether they bought again within ``horizon`` days of it."""
    x = Inputs(*(np.asarray(v, dtype=np.float64) for v in (recency, occasions, monetary, tenure, gap)))
    y = np.asarray(returned, dtype=bool)
    latest = np.asarray(cutoff) == cutoffs[0] if len(cutoffs) else np.zeros(len(y), dtype=bool)
    prior = float(y.mean()) if len(y) else 0.5
    repeat = x.occasions >= 2
    one = _choose(x.rows(~repeat), y[~repeat], latest[~repeat], ONE_TIME_CANDIDATES, prior)
    rep = _choose(x.rows(repeat), y[repeat], latest[repeat], REPEAT_CANDIDATES, prior)
    return ChanceModel(horizon, one, rep, tuple(cutoffs))
