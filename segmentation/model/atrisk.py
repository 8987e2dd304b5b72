"""Churn risk: one per-customer definition, independent of K and of how clusters are named.

A customer is at risk when they are worth keeping, are slipping, and are not yet gone, all
measured by their chance to buy again within the horizon (``chance``), learned from what the
shop's own customers did after earlier cut-offs:

- **worth keeping**: repeat buyers (2+ purchase days), or customers whose spend is in the shop's
  top 20% (``one_time_spend`` picks the level; "none" leaves spend out);
- **slipping**: past the shop's return time, their odds of buying again (chance / (1 - chance))
  have fallen to ``fall`` (two thirds, by default) or less of what they were on the day of their
  last order, and their chance is now below that of three in four active customers (``ceiling``): a
  marketplace's lapsing repeat buyer who is still likelier to return than most active customers
  is not at risk, whatever their own fall. Odds, not the chance itself, so that a wholesaler's
  customer slipping from 95% to 80% counts as a fall, as a marketplace's from 2% to 1% does;
- **not yet gone**: within the return window for one-time buyers (past it, most of those who
  come back have done so, and lapsed one-time buyers are all alike), within the lost cut-off for
  repeat buyers, and their chance is still at least that of three in
  four lapsed customers of their kind (``floor`` for one-time buyers, ``floor_repeat`` for repeat
  buyers): a win-back has someone to win, clearly more than among the lapsed.

``floor`` and ``ceiling`` are measured on the shop's customers at training.

The parameters live in the playbook's ``[at_risk]`` table; the floor and the chance model are
measured at training and saved with the model, so every answer of one model version
(``/segment at-risk``, digests and their exports, ``segment at-risk``) uses the same rule. The
revenue at stake is an expected value: each flagged customer's chance times their typical spend
per purchase day.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.model.chunks import ROWS, by_rows
from segmentation.model.terms import NOT_LOW_SPENDERS, TOP_SPENDERS, ShopTerms

if TYPE_CHECKING:
    import pandas as pd

    from segmentation.model.chance import ChanceModel

ONE_TIME_SPEND = ("high", "mid", "none")  # the spend that makes a customer worth keeping, besides returning


FLAG_ROWS = ROWS  # customers flagged at once (``AtRiskRule.flags``)


@dataclass(frozen=True)
class AtRiskRule:
    repeat_buyers: bool = True
    one_time_spend: str = "high"  # "high" (top 20%), "mid" (top 60%) or "none"
    fall: float = (
        2 / 3
    )  # flagged once the odds of buying again are at most this share of those on the day of the last order
    floor: float | None = None  # set at training: the chance three in four lapsed one-time buyers stay under
    ceiling: float | None = None  # set at training: the chance three in four active customers reach
    floor_repeat: float | None = None  # set at training: the same for the lapsed repeat buyers

    def flags(self, terms: ShopTerms, recency, occasions, monetary, chance, chance_then) -> np.ndarray:
        """True for every customer at risk. A NaN chance (no chance model) flags nobody. Worked
        out a million rows at a time: the comparisons' temporaries of 9.3M customers at once
        took 0.45 GB at the training's peak."""
        columns = [np.asarray(v) for v in (recency, occasions, monetary, chance, chance_then)]
        return by_rows(functools.partial(self._flags, terms), columns, bool, FLAG_ROWS)

    def _flags(self, terms: ShopTerms, recency, occasions, monetary, chance, chance_then) -> np.ndarray:
        r = np.asarray(recency, dtype=np.float64)
        o = np.asarray(occasions, dtype=np.float64)
        m = np.asarray(monetary, dtype=np.float64)
        p = np.asarray(chance, dtype=np.float64)
        p0 = np.asarray(chance_then, dtype=np.float64)
        worth = np.zeros(r.shape, dtype=bool)
        if self.repeat_buyers:
            worth |= o >= 2
        threshold = self.spend_threshold(terms)
        if threshold is not None:
            worth |= m >= threshold
        # one-time buyers only within the return window: past it, most of those who come back have
        # done so, and the lapsed one-time buyers are all alike; repeat buyers until they are lost
        last = np.where(o >= 2, terms.lost_for(o), float(terms.return_window))
        out = worth & (r > terms.return_time) & (r <= last)
        with np.errstate(invalid="ignore", divide="ignore"):
            # odds now <= fall x odds then, without a division: p (1 - p0) <= fall p0 (1 - p)
            out &= p * (1.0 - p0) <= self.fall * p0 * (1.0 - p)
            if self.floor is not None:
                floor_repeat = self.floor if self.floor_repeat is None else self.floor_repeat
                out &= p >= np.where(o >= 2, floor_repeat, self.floor)
            if self.ceiling is not None:
                out &= p < self.ceiling
        return out

    def spend_threshold(self, terms: ShopTerms) -> float | None:
        """The least spend that makes a customer worth keeping on its own (None: spend is left out)."""
        return {"high": terms.spend_high_from, "mid": terms.spend_low_below}.get(self.one_time_spend)

    def frame_flags(self, terms: ShopTerms, frame: pd.DataFrame, model: ChanceModel | None) -> np.ndarray:
        """``flags`` for every row of an RFM frame, a million rows at a time (bounded temporaries)."""
        columns = [frame[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap")]
        if model is None:
            return np.zeros(len(frame), dtype=bool)

        def block(r, o, m, g):
            return self._flags(terms, r, o, m, model.now(r, o, m, g), model.right_after(r, o, m, g))

        return by_rows(block, columns, bool)

    def text(self, terms: ShopTerms, horizon: int | None = None) -> str:
        worth = []
        if self.repeat_buyers:
            worth.append("repeat buyers (2+ purchase days)")
        threshold = self.spend_threshold(terms)
        if threshold is not None:
            share = TOP_SPENDERS if self.one_time_spend == "high" else NOT_LOW_SPENDERS
            worth.append(f"customers who spent {terms.money(threshold, exact=True)} or more (the {share})")
        if not worth:
            return "nobody (the playbook leaves out both repeat buyers and spend)"
        if horizon is None:
            return f"nobody: the history was too short to learn who comes back ({' or '.join(worth)} would count)"
        if abs(self.fall - 2 / 3) < 0.01:
            fallen = "have fallen by a third or more"
        elif self.fall == 0.5:
            fallen = "have halved or more"
        else:
            fallen = f"are {self.fall:.0%} or less of what they were"
        bounds = []
        if self.ceiling is not None:
            bounds.append(f"below {_pct(self.ceiling)} (less likely than three in four active customers)")
        if self.floor is not None:
            repeat = self.floor if self.floor_repeat is None else self.floor_repeat
            like = (
                f"{_pct(self.floor)}"
                if repeat == self.floor
                else f"{_pct(self.floor)} for one-time buyers, {_pct(repeat)} for repeat buyers"
            )
            bounds.append(f"at least that of three in four lapsed customers like them ({like}): someone to win back")
        within = f"; their chance is now {' and '.join(bounds)}" if bounds else ""
        return (
            f"{' or '.join(worth)} past the return time ({terms.return_time + 1}–{terms.return_window} days since the "
            f"last order for one-time buyers, {terms.return_time + 1}–{terms.repeat_lost} for repeat buyers) whose odds of buying again within {horizon:,} days {fallen} since "
            f"the day of their last order{within}"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}" if p >= 0.001 else "<0.1%"


@dataclass(frozen=True)
class SegmentRisk:
    name: str
    customers: int
    revenue: float  # expected revenue at stake (chance x typical spend)


@dataclass(frozen=True)
class AtRiskSummary:
    """Customers at risk overall and per segment, with the revenue at stake: the expected value
    of their next purchase within the horizon (each one's chance to buy again times their typical
    spend per purchase day), against the same expected value of every customer."""

    customers: int
    revenue: float  # expected revenue at stake
    all_customers: int
    all_revenue: float  # every customer's expected revenue within the horizon
    definition: str
    by_segment: tuple[SegmentRisk, ...]
    model_version: str
    as_of: str  # the date the recency is counted to
    past_spend: float = 0.0  # what the customers at risk have spent so far, in total
    horizon: int | None = None  # days the chance to buy again looks ahead

    @property
    def share_of_customers(self) -> float:
        return self.customers / self.all_customers if self.all_customers else 0.0

    @property
    def share_of_revenue(self) -> float:
        return self.revenue / self.all_revenue if self.all_revenue else 0.0

    def stake(self, money: Callable[[float], str]) -> str:
        """The revenue at stake in words, e.g. "R$21,035 expected within 258 days (8.7% of all
        customers' expected revenue)"; ``money`` formats an amount."""
        if self.horizon is None:
            return "no revenue at stake measured (no chance to buy again was learned)"
        share = self.share_of_revenue
        pct = "<0.1%" if 0 < share < 0.0005 else f"{share:.1%}"
        return f"{money(self.revenue)} expected within {self.horizon:,} days ({pct} of all customers' expected revenue)"

    def as_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "revenue_at_stake": round(self.revenue, 2),
            "share_of_customers": self.share_of_customers,
            "share_of_expected_revenue": self.share_of_revenue,
            "past_spend": round(self.past_spend, 2),
            "horizon_days": self.horizon,
            "definition": self.definition,
            "by_segment": [
                {"name": s.name, "customers": s.customers, "revenue_at_stake": round(s.revenue, 2)}
                for s in self.by_segment
            ],
            "model_version": self.model_version,
            "as_of": self.as_of,
        }


def expected_value(chance, monetary, occasions) -> np.ndarray:
    """Each customer's chance to buy again times their typical spend per purchase day (0 without
    a chance), a million customers at a time (no wide temporaries)."""

    def block(chance: np.ndarray, monetary: np.ndarray, occasions: np.ndarray) -> np.ndarray:
        p = np.nan_to_num(np.asarray(chance, dtype=np.float64), nan=0.0)
        return p * np.asarray(monetary, dtype=np.float64) / np.maximum(np.asarray(occasions, dtype=np.float64), 1.0)

    return by_rows(block, [np.atleast_1d(np.asarray(v)) for v in (chance, monetary, occasions)], np.float64)


def summarise(
    flags: np.ndarray,
    value: np.ndarray,
    monetary: np.ndarray,
    labels: np.ndarray,
    names: dict[int, str],
    order: list[int],
    definition: str,
    model_version: str,
    as_of: str,
    horizon: int | None = None,
) -> AtRiskSummary:
    """Totals of ``flags`` overall and per cluster (segments in ``order``, empty ones left out);
    ``value`` is each customer's expected revenue (``expected_value``)."""
    v = np.asarray(value, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    k = max(names) + 1 if names else 0
    counts = np.bincount(labels[flags], minlength=k)
    at_stake = np.bincount(labels[flags], weights=v[flags], minlength=k)
    rows = tuple(SegmentRisk(names[c], int(counts[c]), float(at_stake[c])) for c in order if counts[c])
    return AtRiskSummary(
        customers=int(flags.sum()),
        revenue=float(v[flags].sum()),
        all_customers=len(v),
        all_revenue=float(v.sum()),
        definition=definition,
        by_segment=rows,
        model_version=model_version,
        as_of=as_of,
        past_spend=float(m[flags].sum()),
        horizon=horizon,
    )


STAKE_NOTE = "revenue at stake: each customer's chance to buy again x their typical spend per purchase day"
