"""What customers do next, measured on the shop's own history: the windows training learns from.

A model claims things about the future (a segment's name, the churn flag, a chance to buy
again), so training looks back: at cut-off days a horizon and more before the end of the
history, it reads every customer as they were then and whether they bought again in the
following ``horizon`` days (``relations.windows_select``). The chance model learns from all
those windows; then every window is scored with the trained segments (each customer as they were
at its cut-off), and what each segment's customers did next is saved with the model ("of the
customers in this segment at 4 cut-offs, a horizon and more before the data's end, 11% bought
again within 258 days"). Several cut-offs, not only the last, so that one unusual season (a
Black Friday's bargain hunters) does not decide what a name claims.

The horizon is the shop's return window: the time in which 80% of returning customers are back.
A history shorter than two horizons shortens it to half the history (and says so).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from segmentation.model import chance as chance_mod
from segmentation.model.chance import ChanceModel
from segmentation.model.terms import Band, ShopTerms

if TYPE_CHECKING:
    import pandas as pd


class History(Protocol):
    """Where the windows of a shop's history come from (a source read again)."""

    def windows(
        self, cutoffs: list[dt.date], horizon: int, until: dt.date, buckets: int = 1
    ) -> pd.DataFrame | None: ...


class RFMTable(Protocol):
    """What the outlook reads of a customer table (``data.kinds.RFMTable`` is one)."""

    @property
    def frame(self) -> pd.DataFrame: ...
    @property
    def snapshot_date(self) -> dt.date: ...
    @property
    def latest_purchase(self) -> dt.date: ...
    @property
    def history(self) -> History | None: ...
    @property
    def customers(self) -> int: ...


WINDOWS = 4  # cut-offs the chance model learns from
MIN_HORIZON = 7
MAX_WINDOW_ROWS = 1_000_000  # customer-windows read back; a larger shop is sampled by a hash of the id


@dataclass(frozen=True)
class Future:
    """What a group of customers did in the horizon after a cut-off."""

    customers: int
    returned: int  # bought again within the horizon
    spend: float  # what they spent in it, in total

    @property
    def rate(self) -> float:
        return self.returned / self.customers if self.customers else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of ``rate``."""
        return wilson(self.returned, self.customers)

    @property
    def spend_per_customer(self) -> float:
        return self.spend / self.customers if self.customers else 0.0

    def as_json(self) -> dict:
        lo, hi = self.interval
        return {
            "customers": self.customers,
            "returned": self.returned,
            "rate": self.rate,
            "interval": [lo, hi],
            "spend_per_customer": self.spend_per_customer,
        }


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def future_of(returned: np.ndarray, spend: np.ndarray) -> Future:
    return Future(int(len(returned)), int(np.count_nonzero(returned)), float(np.sum(spend)))


@dataclass(frozen=True)
class TierFutures:
    """The measured future of the recency tiers and of the customers flagged at risk, from the
    window a horizon before the end of the history (every group disjoint: the flagged customers
    are taken out of their band)."""

    horizon: int
    cutoffs: tuple[dt.date, ...]  # the cut-offs the customers were scored as of
    active: Future
    at_risk: Future
    lapsing: Future
    lapsed: Future
    lost: Future
    everyone: Future

    def items(self) -> list[tuple[str, Future]]:
        return [
            ("active", self.active),
            ("at risk", self.at_risk),
            ("lapsing", self.lapsing),
            ("lapsed", self.lapsed),
            ("lost", self.lost),
        ]

    def as_json(self) -> dict:
        return {
            "horizon_days": self.horizon,
            "cutoffs": [c.isoformat() for c in self.cutoffs],
            **{name.replace(" ", "_"): f.as_json() for name, f in self.items()},
            "everyone": self.everyone.as_json(),
        }


@dataclass(frozen=True, eq=False)
class Outlook:
    """What training learned about the future of this history (``learn``)."""

    horizon: int
    chance: ChanceModel | None
    windows: pd.DataFrame | None  # every customer at each cut-off, and what they did next
    note: str = ""  # why the horizon was shortened or there is no chance model
    cutoffs: tuple[dt.date, ...] = ()  # the windows' cut-offs, the latest first


def first_day(table: RFMTable) -> dt.date:
    """The first purchase day of the history."""
    f = table.frame
    tenure = chance_mod.tenure_of(f["recency"].to_numpy(), f["occasions"].to_numpy(), f["gap"].to_numpy())
    return table.snapshot_date - dt.timedelta(days=int(round(float(tenure.max())))) if len(f) else table.snapshot_date


def horizon_for(terms: ShopTerms, table: RFMTable) -> tuple[int, str]:
    """The horizon the chance is learned for: the return window, or half the history when shorter."""
    length = (table.latest_purchase - first_day(table)).days
    h = max(MIN_HORIZON, int(terms.return_window))
    if length >= 2 * h:
        return h, ""
    short = max(MIN_HORIZON, length // 2)
    return short, (
        f"the history is {length:,} days long, too short to look {h:,} days (the return window) ahead "
        f"from earlier cut-offs: the chance to buy again is for the next {short:,} days"
    )


def cutoffs_for(last: dt.date, first: dt.date, horizon: int, windows: int = WINDOWS) -> list[dt.date]:
    """Cut-offs whose horizon ends by ``last``, a third of a horizon apart, each with at least a
    week of history before it (the latest first)."""
    step = max(MIN_HORIZON, horizon // 3)
    out = []
    for j in range(windows):
        c = last - dt.timedelta(days=horizon + j * step)
        if (c - first).days < MIN_HORIZON:
            break
        out.append(c)
    return out


def sample_buckets(customers: int, windows: int) -> int:
    rows = customers * max(windows, 1)
    return max(1, math.ceil(rows / MAX_WINDOW_ROWS))


def learn(table: RFMTable, terms: ShopTerms, horizon: int | None = None) -> Outlook:
    """Read the windows of ``table``'s history and fit the chance to buy again on them, for the
    ``horizon`` given (a backtest's) or the shop's own (``horizon_for``). The windows end on the
    last day with orders: counting the same orders to a later date learns the same thing."""
    if horizon is None:
        horizon, note = horizon_for(terms, table)
    else:
        note = ""
    if table.history is None:
        return Outlook(horizon, None, None, "the source's history cannot be read again here")
    cutoffs = cutoffs_for(table.latest_purchase, first_day(table), horizon)
    if not cutoffs:
        return Outlook(horizon, None, None, "the history is too short to learn who comes back")
    buckets = sample_buckets(table.customers, len(cutoffs))
    rows = table.history.windows(cutoffs, horizon, table.latest_purchase, buckets)
    if rows is None:  # a warehouse whose hash the product does not know: reading everyone could fill memory
        return Outlook(
            horizon,
            None,
            None,
            f"the history's {table.customers:,} customers are too many to read at each cut-off without a hash sample, which this database does not offer here",
        )
    model = chance_mod.fit(
        rows["recency"].to_numpy(),
        rows["occasions"].to_numpy(),
        rows["monetary"].to_numpy(),
        rows["tenure"].to_numpy(),
        rows["gap"].to_numpy(),
        rows["returned"].to_numpy(),
        rows["cutoff"].to_numpy(),
        horizon,
        cutoffs,
    )
    return Outlook(horizon, model, rows, note, tuple(cutoffs))


MIN_GROUP = 30  # customers a lapsing or lapsed group needs to set the repeat buyers' lost cut-off


def lost_cutoffs(terms: ShopTerms, windows: pd.DataFrame) -> tuple[int, int]:
    """The lost cut-offs of one-time and of repeat buyers, from what customers did after the
    windows' cut-offs: for each kind, the last day of recency (in steps of a tenth of the lost
    cut-off) at which customers of that kind came back at least as often as the least likely
    group of lapsing or lapsed customers (one-time or repeat buyers, by the shop's own cut-offs)
    did; never before the lost cut-off, at most the longest recency of that kind in the windows.
    Repeat buyers come back long after one-time buyers would have: calling both lost at the same
    age would call the likelier ones lost first; and "lost" never claims more than the history
    shows."""

    r = windows["recency"].to_numpy(np.float64)
    repeat = windows["occasions"].to_numpy() >= 2
    y = windows["returned"].to_numpy(bool)
    band = np.searchsorted(np.array([terms.return_time, terms.return_window, terms.lost_after], dtype=np.float64), r)
    rates = []
    for b in (Band.LAPSING, Band.LAPSED):
        for kind in (~repeat, repeat):
            inside = (band == b) & kind
            if inside.sum() >= MIN_GROUP:
                rates.append(float(y[inside].mean()))
    if not rates:
        return terms.lost_after, terms.lost_after
    reference = min(rates)
    step = max(MIN_HORIZON, terms.lost_after // 10)

    def cutoff(kind: np.ndarray) -> int:
        if not kind.any():
            return terms.lost_after
        cut, longest = terms.lost_after, int(r[kind].max())
        while cut < longest:
            inside = kind & (r > cut) & (r <= cut + step)
            if inside.sum() >= MIN_GROUP and (y[inside].mean() < reference or not y[inside].any()):
                break  # as unlikely as the least likely, or nobody that long gone came back
            cut += step
        return max(terms.lost_after, min(cut, longest))

    return cutoff(~repeat), cutoff(repeat)
