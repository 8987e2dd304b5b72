"""Personas: what each segment's customers buy, how they pay and where they order from.

Computed at training inside the source's engine (``olist_sql.olist_persona`` and
``relations.transactions_persona``, run by ``sources.OpenSource.personas``): every customer is
scored there by the compiled model, the same labels as training gives, and only a small
histogram per segment comes back; a segment of more than ``SAMPLE`` customers is described from a
hash sample of about that many (``sampled_buckets``), and says so. Stored with
the model; shown by ``segment segments``, ``/segment segments``, the answer about one customer
and the report.

- **Categories**: the top three by their share of the segment's item revenue (Olist: item
  prices of its delivered orders; a transactions source: its ``--category-col`` lines).
- **Payment**: the type carrying the largest share of the segment's payment value, and the
  median number of instalments of its orders (the most of any payment of an order).
- **States**: the top three by the share of the segment's customers who ordered from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

TOP = 3


LIFT = 1.25  # over-represented: at least this many times the whole shop's share
MIN_SHARE = 0.05  # of the segment, and
MIN_COUNT = 10  # customers (states) or item lines (categories): what a lift stands on
TOP_LIFTS = 2
# A segment of more customers than this is described from a sample of about this many, by a hash
# of their ids (``sampled_buckets``), its counts weighted back to the whole segment: a share of
# 100,000 customers is within a few tenths of a point of the segment's, and shares are shown to
# the whole point. At 10M Olist-layout orders the joins of every order, item line and payment
# with 9.3M customers' segments were a third of the training.
SAMPLE = 100_000
BUCKETS = 1000


@dataclass(frozen=True)
class Share:
    label: str
    share: float  # 0..1
    lift: float | None = None  # the segment's share over the whole shop's

    def text(self) -> str:
        if self.lift is not None:
            return f"{_pretty(self.label)} {self.share:.0%} (×{self.lift:.1f} the shop's)"
        return f"{_pretty(self.label)} {self.share:.0%}"


@dataclass(frozen=True)
class Persona:
    categories: tuple[Share, ...] = ()  # by share of the segment's item revenue
    payment: Share | None = None  # by share of the segment's payment value
    instalments: float | None = None  # median instalments of the segment's orders
    states: tuple[Share, ...] = ()  # by share of the segment's customers
    # what sets it apart: categories and states over-represented against the whole shop
    more_categories: tuple[Share, ...] = ()
    more_states: tuple[Share, ...] = ()
    sampled: int | None = None  # described from a sample of this many of its customers (None: all)

    @property
    def empty(self) -> bool:
        return not (self.categories or self.payment or self.instalments is not None or self.states)

    def line(self) -> str:
        """E.g. "buys bed bath table 24%, housewares 11% · pays by credit card 74%, typically 3
        instalments · orders from SP 42%, RJ 13%"."""
        parts = []
        if self.categories:
            parts.append("buys " + ", ".join(s.text() for s in self.categories))
        pay = []
        if self.payment is not None:
            pay.append(f"pays by {self.payment.text()}")
        if self.instalments is not None:
            n = self.instalments
            word = "instalment" if n == 1 else "instalments"
            pay.append(f"typically {n:g} {word}" if pay else f"pays in typically {n:g} {word}")
        if pay:
            parts.append(", ".join(pay))
        if self.states:
            parts.append("orders from " + ", ".join(s.text() for s in self.states))
        more = [*self.more_categories, *self.more_states]
        if more:
            parts.append("more than the shop: " + ", ".join(s.text() for s in more))
        if self.sampled is not None and parts:
            parts.append(f"from a sample of {self.sampled:,} of its customers")
        return " · ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "categories": [{"name": s.label, "revenue_share": s.share} for s in self.categories],
            "payment": None
            if self.payment is None
            else {"type": self.payment.label, "value_share": self.payment.share},
            "instalments_median": self.instalments,
            "states": [{"state": s.label, "customer_share": s.share} for s in self.states],
            "over_represented": {
                "categories": [
                    {"name": s.label, "revenue_share": s.share, "lift": s.lift} for s in self.more_categories
                ],
                "states": [{"state": s.label, "customer_share": s.share, "lift": s.lift} for s in self.more_states],
            },
            "sampled_customers": self.sampled,
            "text": self.line(),
        }


def _pretty(label: str) -> str:
    return label.replace("_", " ")


def sampled_buckets(sizes: dict[int, int], per_segment: int | None = None, buckets: int = BUCKETS) -> dict[int, int]:
    """For each segment of more than ``per_segment`` (default ``SAMPLE``) customers, how many of
    ``buckets`` buckets (a hash of the customer id) describe it: about ``per_segment`` of its
    customers. Segments not listed are described whole."""
    per_segment = SAMPLE if per_segment is None else per_segment
    keep = {c: math.ceil(buckets * per_segment / n) for c, n in sizes.items() if n > per_segment}
    return {c: k for c, k in keep.items() if k < buckets}


def summarise(
    facet, cluster, label, amount, n, sizes: dict[int, int], sampled: dict[int, int] | None = None
) -> dict[int, Persona]:
    """Personas from the facet histograms (``relations.FACETS_SELECT``); ``sizes``: customers per
    cluster; ``sampled``: for the clusters described from a sample, how many customers it held.
    A sampled segment's shares are its sample's; in the whole shop's shares (the lifts'
    yardstick) its amounts and counts are weighted up to its size."""
    sampled = {c: k for c, k in (sampled or {}).items() if k and sizes.get(c)}
    weight = {c: sizes[c] / k for c, k in sampled.items()}
    per: dict[int, dict[str, list[tuple[str, float, int]]]] = {}
    for f, c, lab, a, k in zip(facet, cluster, label, amount, n):
        per.setdefault(int(c), {}).setdefault(str(f), []).append((str(lab), float(a or 0.0), int(k or 0)))
    shop_categories = _whole_shop(per, "category", True, weight)
    shop_states = _whole_shop(per, "state", False, weight, total=sum(sizes.values()) or None)
    out = {}
    for c, facets in per.items():
        customers = sampled.get(c, sizes.get(c))  # the customers its counts are of
        categories = _top(facets.get("category", []), by_amount=True)
        states = _top(facets.get("state", []), by_amount=False, total=customers)
        out[c] = Persona(
            categories=categories,
            payment=next(iter(_top(facets.get("payment", []), by_amount=True, top=1)), None),
            instalments=_median(facets.get("instalments", [])),
            states=states,
            more_categories=_lifts(facets.get("category", []), shop_categories, True, None),
            more_states=_lifts(facets.get("state", []), shop_states, False, customers),
            sampled=sampled.get(c),
        )
    return {c: p for c, p in out.items() if not p.empty}


def _whole_shop(
    per, facet: str, by_amount: bool, weight: dict[int, float], total: int | None = None
) -> dict[str, float]:
    """Each label's share of the whole shop (all segments together, a sampled one by its ``weight``)."""
    sums: dict[str, float] = {}
    for c, facets in per.items():
        w = weight.get(c, 1.0)
        for lab, a, k in facets.get(facet, []):
            sums[lab] = sums.get(lab, 0.0) + (a if by_amount else float(k)) * w
    whole = float(total) if total else sum(sums.values())
    return {lab: v / whole for lab, v in sums.items()} if whole > 0 else {}


def _lifts(
    rows: list[tuple[str, float, int]],
    shop: dict[str, float],
    by_amount: bool,
    total: int | None,
) -> tuple[Share, ...]:
    """The labels most over-represented in the segment against the whole shop (at least ``LIFT``
    times its share, with ``MIN_SHARE`` of the segment and ``MIN_COUNT`` behind it), largest lift
    first; a segment that is most of the shop has none."""
    whole = float(total) if total else sum((a if by_amount else float(k)) for _, a, k in rows)
    if whole <= 0:
        return ()
    found = []
    for lab, a, k in rows:
        share = (a if by_amount else float(k)) / whole
        base = shop.get(lab, 0.0)
        if base > 0 and k >= MIN_COUNT and share >= MIN_SHARE and share / base >= LIFT:
            found.append(Share(lab, share, share / base))
    found.sort(key=lambda s: (-(s.lift or 0.0), s.label))
    return tuple(found[:TOP_LIFTS])


def _top(
    rows: list[tuple[str, float, int]], by_amount: bool, top: int = TOP, total: int | None = None
) -> tuple[Share, ...]:
    values = [(lab, a if by_amount else float(k)) for lab, a, k in rows]
    whole = float(total) if total else sum(v for _, v in values)
    if whole <= 0:
        return ()
    best = sorted(values, key=lambda lv: (-lv[1], lv[0]))[:top]
    return tuple(Share(lab, v / whole) for lab, v in best if v > 0)


def _median(rows: list[tuple[str, float, int]]) -> float | None:
    """The median of an integer histogram (label: the value, n: how many); the lower of the two
    middle values when the count is even."""
    pairs = sorted((int(lab), k) for lab, _, k in rows if k > 0 and lab.lstrip("-").isdigit())
    if not pairs:
        return None
    values = np.array([v for v, _ in pairs], dtype=np.float64)
    counts = np.array([k for _, k in pairs], dtype=np.int64)
    half = (counts.sum() + 1) // 2
    return float(values[int(np.searchsorted(np.cumsum(counts), half))])
