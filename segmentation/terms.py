"""The shop's business terms: days, purchase days and spend levels measured on its own customers.

Every segment name and the at-risk rule are written in these terms, so they mean the same thing
on a marketplace where most people buy once and on a wholesaler whose customers return every
few weeks:

- **return time**: the typical gap between two purchase days of a returning customer (the
  median gap, each returning customer weighing 1);
- **return window**: 80% of returns happen within it (the 80th percentile gap);
- **lost after**: 95% of returns happen within it (the 95th percentile gap).

Recency bands follow: *active* (last purchase within the return time), *lapsing* (past the
return time, within the return window), *lapsed* (past the return window, within the lost
cut-off) and *lost* (past it). Frequency counts purchase days (two orders on the same day are
one occasion, a split basket rather than a return): *one-time* (1), *repeat* (2 or more),
*frequent* (at least as many as the median returning customer, and at least 3). Spend is
relative to the shop's customers: *high* is the top 20% by total spend, *low* the bottom 40%.

The gaps do not depend on the snapshot date, so the terms stay put when only time passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from .sources import GapStats

if TYPE_CHECKING:
    import pandas as pd

# Below this many returning customers the gaps say too little: conventional e-commerce
# cut-offs are used instead and the terms say so.
MIN_RETURNING_CUSTOMERS = 30
FALLBACK_DAYS = (90, 180, 365)
HIGH_SPEND_SHARE = 0.20  # top 20% of customers by total spend
LOW_SPEND_SHARE = 0.40  # bottom 40%
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


@dataclass(frozen=True)
class ShopTerms:
    return_time: int  # days
    return_window: int  # days
    lost_after: int  # days
    frequent_from: int  # purchase days
    spend_low_below: float  # spend under this is low (40th percentile)
    spend_high_from: float  # spend at or above this is high (80th percentile)
    returning_customers: int
    gaps: int
    measured: bool  # False: too few returning customers, conventional cut-offs used
    currency: str = ""

    # -- classification, vectorised ----------------------------------------------------
    def bands(self, recency: np.ndarray | pd.Series) -> np.ndarray:
        r = np.asarray(recency, dtype=np.float64)
        return np.searchsorted(
            np.array([self.return_time, self.return_window, self.lost_after], dtype=np.float64), r, side="left"
        ).astype(np.int8)

    def freqs(self, occasions: np.ndarray | pd.Series) -> np.ndarray:
        o = np.asarray(occasions, dtype=np.float64)
        return np.where(o >= self.frequent_from, Freq.FREQUENT, np.where(o >= 2, Freq.REPEAT, Freq.ONE_TIME)).astype(
            np.int8
        )

    def spends(self, monetary: np.ndarray | pd.Series) -> np.ndarray:
        m = np.asarray(monetary, dtype=np.float64)
        return np.where(
            m >= self.spend_high_from, Spend.HIGH, np.where(m < self.spend_low_below, Spend.LOW, Spend.MID)
        ).astype(np.int8)

    def band(self, recency: float) -> Band:
        return Band(int(self.bands(np.array([recency]))[0]))

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
        if band == Band.ACTIVE:
            return f"last order within {self.return_time} days"
        if band == Band.LAPSING:
            return f"last order {self.return_time + 1}–{self.return_window} days ago"
        if band == Band.LAPSED:
            return f"last order {self.return_window + 1}–{self.lost_after} days ago"
        return f"last order more than {self.lost_after} days ago"

    def lines(self) -> list[str]:
        """The terms as a marketer reads them, one per line."""
        if self.measured:
            basis = f"measured on {self.returning_customers:,} returning customers ({self.gaps:,} gaps)"
        else:
            basis = (
                f"only {self.returning_customers:,} returning customers: too few to measure, "
                "so conventional cut-offs are used"
            )
        days = lambda n: f"{n} day" + ("" if n == 1 else "s")  # noqa: E731
        return [
            f"Return time {days(self.return_time)}, return window {days(self.return_window)}, lost after "
            f"{days(self.lost_after)}: half, 80% and 95% of the gaps between a returning customer's "
            f"purchase days are no longer (each returning customer counting once); {basis}.",
            f"Recency: active ≤ {self.return_time} days · lapsing ≤ {self.return_window} · "
            f"lapsed ≤ {self.lost_after} · lost beyond.",
            f"Frequency (purchase days; same-day orders count once): one-time 1 · repeat 2+ · "
            f"frequent {self.frequent_from}+.",
            f"Spend (total per customer): low < {self.money(self.spend_low_below, exact=True)} (bottom 40%) · "
            f"high ≥ {self.money(self.spend_high_from, exact=True)} (top 20%).",
        ]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def measure(frame: pd.DataFrame, gaps: GapStats, currency: str = "") -> ShopTerms:
    """The terms of one shop, from its per-customer RFM and its repurchase gaps."""
    if (
        gaps.returning_customers >= MIN_RETURNING_CUSTOMERS
        and gaps.p50 is not None
        and gaps.p80 is not None
        and gaps.p95 is not None
    ):
        t, w, lost = int(gaps.p50), int(gaps.p80), int(gaps.p95)
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
        returning_customers=gaps.returning_customers,
        gaps=gaps.gaps,
        measured=measured,
        currency=currency,
    )
