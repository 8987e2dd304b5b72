"""Personas: what each segment's customers buy, how they pay and where they order from.

Computed at training inside the source's engine (``relations.olist_persona`` and
``relations.transactions_persona``, run by ``sources.OpenSource.personas``): every customer is
scored there by the compiled model, the same labels as training gives, and only a small
histogram per segment comes back. Stored with
the model; shown by ``segment segments``, ``/segment segments``, the answer about one customer
and the report.

- **Categories**: the top three by their share of the segment's item revenue (Olist: item
  prices of its delivered orders; a transactions source: its ``--category-col`` lines).
- **Payment**: the type carrying the largest share of the segment's payment value, and the
  median number of instalments of its orders (the most of any payment of an order).
- **States**: the top three by the share of the segment's customers who ordered from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TOP = 3


@dataclass(frozen=True)
class Share:
    label: str
    share: float  # 0..1

    def text(self) -> str:
        return f"{_pretty(self.label)} {self.share:.0%}"


@dataclass(frozen=True)
class Persona:
    categories: tuple[Share, ...] = ()  # by share of the segment's item revenue
    payment: Share | None = None  # by share of the segment's payment value
    instalments: float | None = None  # median instalments of the segment's orders
    states: tuple[Share, ...] = ()  # by share of the segment's customers

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
        return " · ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "categories": [{"name": s.label, "revenue_share": s.share} for s in self.categories],
            "payment": None
            if self.payment is None
            else {"type": self.payment.label, "value_share": self.payment.share},
            "instalments_median": self.instalments,
            "states": [{"state": s.label, "customer_share": s.share} for s in self.states],
            "text": self.line(),
        }


def _pretty(label: str) -> str:
    return label.replace("_", " ")


def summarise(facet, cluster, label, amount, n, sizes: dict[int, int]) -> dict[int, Persona]:
    """Personas from the facet histograms (``relations.FACETS_SELECT``); ``sizes``: customers per cluster."""
    per: dict[int, dict[str, list[tuple[str, float, int]]]] = {}
    for f, c, lab, a, k in zip(facet, cluster, label, amount, n):
        per.setdefault(int(c), {}).setdefault(str(f), []).append((str(lab), float(a or 0.0), int(k or 0)))
    out = {}
    for c, facets in per.items():
        out[c] = Persona(
            categories=_top(facets.get("category", []), by_amount=True),
            payment=next(iter(_top(facets.get("payment", []), by_amount=True, top=1)), None),
            instalments=_median(facets.get("instalments", [])),
            states=_top(facets.get("state", []), by_amount=False, total=sizes.get(c)),
        )
    return {c: p for c, p in out.items() if not p.empty}


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
