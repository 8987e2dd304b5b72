"""Churn risk: one per-customer definition, independent of K and of how clusters are named.

A customer is at risk when they are worth keeping and are slipping, but are not yet gone:

- **repeat buyers** (2+ purchase days) whose time since the last order is past
  ``own_gap_multiple`` × their own usual gap, but never before the shop's return time and at
  the latest once past the return window, and who are not lost (within the lost cut-off).
  Measuring against their own rhythm catches a weekly buyer gone for two months long before the
  shop-wide window would; the return time keeps a customer who happened to buy twice in one
  week from counting as overdue after a fortnight; the return window makes sure a slow repeat
  buyer (a usual gap of half the lost cut-off or more) is flagged before they count as lost;
- **one-time buyers with high spend** (top 20% by default) who are past the shop's return time
  but still within its return window: after that, most of those who come back have done so.

The parameters live in the playbook's ``[at_risk]`` table and are saved with the model at
training, so every answer of one model version (``/segment at-risk``, digests and their
exports, ``segment at-risk``) uses the same rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .terms import ShopTerms

if TYPE_CHECKING:
    import pandas as pd

ONE_TIME_SPEND = ("high", "mid", "none")  # the levels of spend a one-time buyer must reach, or none


@dataclass(frozen=True)
class AtRiskRule:
    repeat_buyers: bool = True
    own_gap_multiple: float = 2.0
    one_time_spend: str = "high"  # "high" (top 20%), "mid" (top 60%) or "none"

    def flags(self, terms: ShopTerms, recency, occasions, gap, monetary) -> np.ndarray:
        """True for every customer at risk. ``gap`` may be NaN: one purchase day, or unknown."""
        r = np.asarray(recency, dtype=np.float64)
        o = np.asarray(occasions, dtype=np.float64)
        out = np.zeros(r.shape, dtype=bool)
        if self.repeat_buyers:
            # an unknown usual gap (a typed profile) counts as the shop's typical one, the return time
            g = np.asarray(gap, dtype=np.float64)
            g = np.where(np.isnan(g), float(terms.return_time), g)
            # overdue at `own_gap_multiple` x their own gap, but never before the return time and at
            # the latest past the return window
            due = np.maximum(np.minimum(self.own_gap_multiple * g, terms.return_window), terms.return_time)
            out |= (o >= 2) & (r > due) & (r <= terms.lost_after)
        threshold = self.one_time_threshold(terms)
        if threshold is not None:
            m = np.asarray(monetary, dtype=np.float64)
            out |= (o < 2) & (m >= threshold) & (r > terms.return_time) & (r <= terms.return_window)
        return out

    def one_time_threshold(self, terms: ShopTerms) -> float | None:
        """The least spend of a one-time buyer the rule looks at (None: one-time buyers are left out)."""
        return {"high": terms.spend_high_from, "mid": terms.spend_low_below}.get(self.one_time_spend)

    def frame_flags(self, terms: ShopTerms, frame: pd.DataFrame) -> np.ndarray:
        """``flags`` for every row of an RFM frame, a million rows at a time (bounded temporaries)."""
        columns = [frame[c].to_numpy() for c in ("recency", "occasions", "gap", "monetary")]
        out = np.empty(len(frame), dtype=bool)
        for start in range(0, len(frame), 1 << 20):
            part = [c[start : start + (1 << 20)] for c in columns]
            out[start : start + len(part[0])] = self.flags(terms, *part)
        return out

    def text(self, terms: ShopTerms) -> str:
        parts = []
        if self.repeat_buyers:
            mult = f"{self.own_gap_multiple:g}×" if self.own_gap_multiple != 2 else "twice"
            parts.append(
                f"repeat buyers (2+ purchase days) whose last order is past {mult} their own usual gap "
                f"(but not before the return time, {terms.return_time} days, and at the latest past the "
                f"return window, {terms.return_window} days), and not yet lost (within {terms.lost_after} days)"
            )
        if self.one_time_spend != "none":
            share, threshold = (
                ("top 20%", terms.spend_high_from)
                if self.one_time_spend == "high"
                else ("top 60%", terms.spend_low_below)
            )
            parts.append(
                f"one-time buyers in the {share} by spend ({terms.money(threshold, exact=True)} or more) past the "
                f"return time but within the return window ({terms.return_time + 1}–"
                f"{terms.return_window} days)"
            )
        if not parts:
            return "nobody (the playbook turns both parts of the rule off)"
        return "; and ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentRisk:
    name: str
    customers: int
    revenue: float


@dataclass(frozen=True)
class AtRiskSummary:
    """Customers at risk and their revenue (their total spend), overall and per segment."""

    customers: int
    revenue: float
    all_customers: int
    all_revenue: float
    definition: str
    by_segment: tuple[SegmentRisk, ...]
    model_version: str
    as_of: str  # the date the recency is counted to

    @property
    def share_of_customers(self) -> float:
        return self.customers / self.all_customers if self.all_customers else 0.0

    @property
    def share_of_revenue(self) -> float:
        return self.revenue / self.all_revenue if self.all_revenue else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "revenue": round(self.revenue, 2),
            "share_of_customers": self.share_of_customers,
            "share_of_revenue": self.share_of_revenue,
            "definition": self.definition,
            "by_segment": [
                {"name": s.name, "customers": s.customers, "revenue": round(s.revenue, 2)} for s in self.by_segment
            ],
            "model_version": self.model_version,
            "as_of": self.as_of,
        }


def summarise(
    flags: np.ndarray,
    monetary: np.ndarray,
    labels: np.ndarray,
    names: dict[int, str],
    order: list[int],
    definition: str,
    model_version: str,
    as_of: str,
) -> AtRiskSummary:
    """Totals of ``flags`` overall and per cluster (segments in ``order``, empty ones left out)."""
    m = np.asarray(monetary, dtype=np.float64)
    k = max(names) + 1 if names else 0
    counts = np.bincount(labels[flags], minlength=k)
    revenue = np.bincount(labels[flags], weights=m[flags], minlength=k)
    rows = tuple(SegmentRisk(names[c], int(counts[c]), float(revenue[c])) for c in order if counts[c])
    return AtRiskSummary(
        customers=int(flags.sum()),
        revenue=float(m[flags].sum()),
        all_customers=len(m),
        all_revenue=float(m.sum()),
        definition=definition,
        by_segment=rows,
        model_version=model_version,
        as_of=as_of,
    )
