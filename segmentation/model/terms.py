"""The shop's business terms: days, purchase days and spend levels measured on its own customers.

Every segment name and the at-risk rule are written in these terms, so they mean the same thing
on a marketplace where most people buy once and on a wholesaler whose customers return every
few weeks:

- **return time**: of the customers who come back within a year of their first purchase day,
  half have done so by then (the median time to the first return);
- **return window**: 80% of them have come back within it;
- **lost after**: 95% of them have come back within it.

The times are estimated from every customer, those who have not come back yet included
(``survival``: Kaplan–Meier on first returns, one-time buyers censored at their tenure), so a
short history does not make them shorter: only returns that could not have been seen yet are
extrapolated, and the reference year is the same for every history length.

Recency bands follow: *active* (last purchase within the return time), *lapsing* (past the
return time, within the return window), *lapsed* (past the return window, within the lost
cut-off) and *lost* (past it). Frequency counts purchase days (two orders on the same day are
one occasion, a split basket rather than a return): *one-time* (1), *repeat* (2 or more),
*frequent* (at least as many as the median returning customer, and at least 3). Spend is
relative to the shop's customers: *high* is the top 20% by total spend, *low* the bottom 40%.

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.model.chunks import by_rows
from segmentation.model.survival import REFERENCE_DAYS, FirstReturns, estimate

if TYPE_CHECKING:
    import pandas as pd

# Below this many returning customers the gaps say too little: conventional e-commerce
# cut-offs are used instead and the terms say so.
MIN_RETURNING_CUSTOMERS = 30
FALLBACK_DAYS = (90, 180, 365)
HIGH_SPEND_SHARE = 0.20  # top 20% of customers by total spend
LOW_SPEND_SHARE = 0.40  # bottom 40%
# how the spend levels read, from the shares above
TOP_SPENDERS = f"top {HIGH_SPEND_SHARE:.0%}"  # "top 20%": high spend
NOT_LOW_SPENDERS = f"top {1 - LOW_SPEND_SHARE:.0%}"  # "top 60%": mid or high spend
LOW_SPENDERS = f"bottom {LOW_SPEND_SHARE:.0%}"  # "bottom 40%": low spend
MIN_FREQUENT = 3


class _Level(IntEnum):
    @property
    def word(self) -> str:
        """How a marketer says it: "lapsing", "one-time", "high"."""
        return self.name.lower().replace("_", "-")


class Band(_Level):
    """Recency bands, from the most to the least active."""

    ACTIVE = 0
    LAPSING = 1
    LAPSED = 2
    LOST = 3


class Freq(_Level):
    ONE_TIME = 0
    REPEAT = 1
    FREQUENT = 2


class Spend(_Level):
    LOW = 0
    MID = 1
    HIGH = 2


def recency_bands(
    recency, occasions, return_time: float, return_window: float, lost: tuple[float, float]
) -> np.ndarray:
    """Each customer's recency band (``Band``): active up to the return time, lapsing up to the
    return window, lapsed until the lost cut-off of their kind (``lost`` = one-time, repeat
    buyers'), lost beyond. The one definition: the terms, the estimator and (in SQL) the compiled
    model use it. Worked out a million customers at a time (one byte each, no wide temporaries)."""
    edges = np.array([return_time, return_window], dtype=np.float64)
    one, repeat = float(lost[0]), float(lost[1])

    def block(recency: np.ndarray, occasions: np.ndarray) -> np.ndarray:
        r = np.asarray(recency, dtype=np.float64)
        band = np.searchsorted(edges, r, side="left")
        cut = np.where(np.asarray(occasions, dtype=np.float64) >= 2, repeat, one)
        return np.where(r > cut, Band.LOST, band).astype(np.int8)

    return by_rows(block, [np.atleast_1d(np.asarray(recency)), np.atleast_1d(np.asarray(occasions))], np.int8)


@dataclass(frozen=True)
class ShopTerms:
    return_time: int  # days
    return_window: int  # days
    lost_after: int  # days
    frequent_from: int  # purchase days
    spend_low_below: float  # spend under this is low (40th percentile)
    spend_high_from: float  # spend at or above this is high (80th percentile)
    returning_customers: int  # customers seen coming back (2+ purchase days)
    customers: int  # customers the return times are measured on (all of them)
    measured: bool  # False: too few returning customers, conventional cut-offs used
    currency: str = ""
    returning_share: float = 0.0  # estimated share of customers who come back within the reference year
    measured_to: int = 0  # days the history follows enough customers; the return curve is extrapolated beyond
    tail: str = ""  # the model continuing the curve beyond measured_to ("" when the history covers the year)
    reference_days: int = REFERENCE_DAYS
    # one-time and repeat buyers count as lost only after this many days: until then customers
    # that long gone still came back as often as the least likely lapsing or lapsed customers
    # (set at training, ``outlook.lost_cutoffs``); 0: lost_after
    one_time_lost_after: int = 0
    repeat_lost_after: int = 0

    @property
    def one_time_lost(self) -> int:
        """The lost cut-off of one-time buyers."""
        return max(self.lost_after, self.one_time_lost_after)

    @property
    def repeat_lost(self) -> int:
        """The lost cut-off of repeat buyers (2+ purchase days)."""
        return max(self.lost_after, self.repeat_lost_after)

    def lost_for(self, occasions) -> np.ndarray:
        """Each customer's lost cut-off: the one of their kind."""
        o = np.asarray(occasions, dtype=np.float64)
        return np.where(o >= 2, float(self.repeat_lost), float(self.one_time_lost))

    # -- classification, vectorised ----------------------------------------------------
    def bands(self, recency, occasions) -> np.ndarray:
        """Each customer's recency band; a repeat buyer is lost only past the repeat buyers' cut-off."""
        return recency_bands(
            recency, occasions, self.return_time, self.return_window, (self.one_time_lost, self.repeat_lost)
        )

    def freqs(self, occasions: np.ndarray | pd.Series) -> np.ndarray:
        def block(o: np.ndarray) -> np.ndarray:
            o = np.asarray(o, dtype=np.float64)
            return np.where(
                o >= self.frequent_from, Freq.FREQUENT, np.where(o >= 2, Freq.REPEAT, Freq.ONE_TIME)
            ).astype(np.int8)

        return by_rows(block, [np.atleast_1d(np.asarray(occasions))], np.int8)

    def spends(self, monetary: np.ndarray | pd.Series) -> np.ndarray:
        def block(m: np.ndarray) -> np.ndarray:
            m = np.asarray(m, dtype=np.float64)
            return np.where(
                m >= self.spend_high_from, Spend.HIGH, np.where(m < self.spend_low_below, Spend.LOW, Spend.MID)
            ).astype(np.int8)

        return by_rows(block, [np.atleast_1d(np.asarray(monetary))], np.int8)

    def band(self, recency: float, occasions: float) -> Band:
        return Band(int(self.bands(np.array([recency]), np.array([occasions]))[0]))

    def freq(self, occasions: float) -> Freq:
        return Freq(int(self.freqs(np.array([occasions]))[0]))

    def spend(self, monetary: float) -> Spend:
        return Spend(int(self.spends(np.array([monetary]))[0]))

    # -- words -------------------------------------------------------------------------
    def money(self, x: float, exact: bool = False) -> str:
        """Money as a marketer reads it: R$644, R$1,250, R$12.50 (no cents from 100 up, unless
        ``exact``: thresholds are shown to the cent so that "R$208.55 or more" means what it says)."""
        text = f"{x:,.0f}" if abs(x) >= 100 and not exact else f"{x:,.2f}"
        return f"{self.currency}{text}"

    def band_range(self, band: Band) -> str:
        one, rep = self.one_time_lost, self.repeat_lost
        if band == Band.ACTIVE:
            return f"last order within {self.return_time} days"
        if band == Band.LAPSING:
            return f"last order {self.return_time + 1}–{self.return_window} days ago"
        if band == Band.LAPSED:
            if one == rep:
                return f"last order {self.return_window + 1}–{one} days ago"
            return f"last order {self.return_window + 1}–{one} days ago (repeat buyers: up to {rep})"
        if one == rep:
            return f"last order more than {one} days ago"
        return f"last order more than {one} days ago (repeat buyers: more than {rep})"

    def lines(self) -> list[str]:
        """The terms as a marketer reads them, one per line."""
        days = lambda n: f"{n:,} day" + ("" if n == 1 else "s")  # noqa: E731
        head = (
            f"Return time {days(self.return_time)}, return window {days(self.return_window)}, lost after "
            f"{days(self.lost_after)}"
        )
        if self.measured:
            year = "a year" if self.reference_days == 365 else days(self.reference_days)
            extrapolated = (
                f"; the history follows customers for {days(self.measured_to)}, the rest of the year is "
                f"extrapolated by a {self.tail} model"
                if self.tail
                else ""
            )
            first = (
                f"{head}: of the customers who come back within {year} of their first purchase "
                f"({self.returning_share:.1%} of all), half have returned by the return time, 80% by the "
                f"window and 95% by the lost cut-off; estimated from all {self.customers:,} customers, "
                f"counting those not back yet ({self.returning_customers:,} came back within the data){extrapolated}."
            )
        else:
            first = (
                f"{head}: only {self.returning_customers:,} returning customers, too few to measure, "
                "so conventional cut-offs are used."
            )
        return [
            first,
            f"Recency: active ≤ {self.return_time} days · lapsing ≤ {self.return_window} · "
            f"lapsed ≤ {self.one_time_lost}"
            + (f" (repeat buyers ≤ {self.repeat_lost})" if self.repeat_lost != self.one_time_lost else "")
            + " · lost beyond"
            + (
                f". Lost starts later than the lost cut-off ({self.lost_after}) where customers that long gone still "
                "came back as often as the least likely lapsing or lapsed customers."
                if max(self.one_time_lost, self.repeat_lost) > self.lost_after
                else "."
            ),
            f"Frequency (purchase days; same-day orders count once): one-time 1 · repeat 2+ · "
            f"frequent {self.frequent_from}+.",
            f"Spend (total per customer): low < {self.money(self.spend_low_below, exact=True)} ({LOW_SPENDERS}) · "
            f"high ≥ {self.money(self.spend_high_from, exact=True)} ({TOP_SPENDERS}).",
        ]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShopTerms:
        """Terms from ``as_json`` (keys of other versions ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def waiting(frame: pd.DataFrame, idle_days: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The one-time buyers as a histogram of the days since their purchase (not back yet), up to
    the day after the latest purchase (``idle_days``: days the snapshot lies beyond it)."""
    one = frame["occasions"].to_numpy() < 2
    recency = frame["recency"].to_numpy()[one].astype(np.int64) - max(int(idle_days), 0)
    counts = np.bincount(np.maximum(recency, 0))
    days = np.flatnonzero(counts)
    return days, counts[days]


def measure(frame: pd.DataFrame, first: FirstReturns, currency: str = "", idle_days: int = 0) -> ShopTerms:
    """The terms of one shop, from its per-customer RFM and its customers' first returns. The
    customers not back yet have waited until the day after the latest purchase: a snapshot taken
    ``idle_days`` later, with no order since, learns nothing new (so the terms do not move when
    only time passes)."""
    curve = None
    if first.customers >= MIN_RETURNING_CUSTOMERS:
        curve = estimate(first, *waiting(frame, idle_days))
        t, w, lost = (curve.quantile(q) for q in (0.5, 0.8, 0.95))
        measured = True
    else:
        t, w, lost = FALLBACK_DAYS
        measured = False
    t = max(t, 1)  # same-day returns do not exist (they are one occasion), so gaps are >= 1
    w = max(w, t + 1)
    lost = max(lost, w + 1)
    occasions = frame["occasions"].to_numpy()
    repeat = occasions[occasions >= 2]
    frequent = max(MIN_FREQUENT, math.ceil(float(np.median(repeat)))) if len(repeat) else MIN_FREQUENT
    m = frame["monetary"].to_numpy(np.float64)
    low, high = np.quantile(m, [LOW_SPEND_SHARE, 1 - HIGH_SPEND_SHARE])
    return ShopTerms(
        return_time=t,
        return_window=w,
        lost_after=lost,
        frequent_from=int(frequent),
        spend_low_below=float(low),
        spend_high_from=float(high),
        returning_customers=first.customers,
        customers=len(frame),
        measured=measured,
        currency=currency,
        returning_share=curve.returning_share if curve is not None else 0.0,
        measured_to=curve.measured_to if curve is not None else 0,
        tail=curve.tail if curve is not None else "",
    )
