"""What every segment name means, in the shop's own terms: the one table of definitions.

A definition is one or more clauses; a customer fits a clause when their recency band,
frequency class, spend level and churn-risk flag (from the one at-risk rule, ``atrisk.py``) are
all among the clause's. "At Risk" and "Can't Lose Them" ask for the flag, so a segment carrying
those names is one the at-risk count agrees with. A cluster earns a name when **at
least two thirds of its customers fit the definition** (all conditions at once, not one dimension at
a time). Names are tried in the order of the table, most specific first, and the first that fits
wins.

Clusters never mix recency bands (the model clusters within each band) nor, unless K is smaller
than the number of strata, one-time and repeat buyers; every band ends with a name that asks
nothing more than the band and the kind of buyer, so every such cluster gets a name that holds (in the lapsing and lapsed bands, "Need Attention" takes the returning
customers the churn rule does not flag). Every name belongs to the bands of its clauses: a segment's recency band is
the band of its customers, and that band is how "more active" is ordered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from segmentation.model.terms import LOW_SPENDERS, NOT_LOW_SPENDERS, TOP_SPENDERS, Band, Freq, ShopTerms, Spend

# at least two thirds of a cluster's customers must fit its name: a clear majority, so a campaign
# sent to a segment by its name reaches mostly the customers the name describes
FIT_THRESHOLD = 2 / 3

_ALL_F = frozenset(Freq)
_ALL_S = frozenset(Spend)
_RETURNED = frozenset({Freq.REPEAT, Freq.FREQUENT})


_ANY_RISK = frozenset({False, True})


@dataclass(frozen=True)
class Clause:
    bands: frozenset[Band]
    freqs: frozenset[Freq] = _ALL_F
    spends: frozenset[Spend] = _ALL_S
    risk: frozenset[bool] = _ANY_RISK

    def holds(self, band: np.ndarray, freq: np.ndarray, spend: np.ndarray, risk: np.ndarray) -> np.ndarray:
        out = np.isin(band, list(self.bands)) & np.isin(freq, list(self.freqs)) & np.isin(spend, list(self.spends))
        if self.risk != _ANY_RISK:
            out &= np.asarray(risk, dtype=bool) == next(iter(self.risk))
        return out

    def holds_one(self, band: int, freq: int, spend: int, risk: bool) -> bool:
        """``holds`` for one customer, without arrays (a lookup answers in microseconds)."""
        return band in self.bands and freq in self.freqs and spend in self.spends and bool(risk) in self.risk

    def words(self, terms: ShopTerms) -> str:
        parts = []
        if self.risk == frozenset({True}):
            parts.append("flagged at risk by the churn rule")
        if self.freqs != _ALL_F:
            parts.append(_freq_words(self.freqs, terms))
        if self.spends != _ALL_S:
            parts.append(_spend_words(self.spends, terms))
        parts.append(_band_words(self.bands, terms))
        return ", ".join(parts)


@dataclass(frozen=True)
class Scope:
    """What a name's qualifier words add to its definition: the recency band, kind of buyer and
    spend level they name (None: the words say nothing of that dimension)."""

    bands: frozenset[Band] | None = None
    freqs: frozenset[Freq] | None = None
    spends: frozenset[Spend] | None = None


@dataclass(frozen=True)
class Definition:
    name: str
    clauses: tuple[Clause, ...]

    def holds(self, band: np.ndarray, freq: np.ndarray, spend: np.ndarray, risk: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(band), dtype=bool)
        for c in self.clauses:
            out |= c.holds(band, freq, spend, risk)
        return out

    def holds_one(self, band: int, freq: int, spend: int, risk: bool) -> bool:
        return any(c.holds_one(band, freq, spend, risk) for c in self.clauses)

    def count(self, cells: np.ndarray) -> int:
        """How many customers fit, from their counts per (band, freq, spend, risk) (``cells``)."""
        return int(sum(int(n) for cell, n in zip(_CELLS, cells) if n and self.holds_one(*cell)))

    @property
    def bands(self) -> frozenset[Band]:
        return frozenset().union(*(c.bands for c in self.clauses))

    def narrowed(self, scope: Scope | None) -> Definition:
        """This definition with a qualified name's conditions added to every clause (clauses left
        empty are dropped; if none is left, the definition as it was)."""
        if scope is None:
            return self
        clauses = []
        for c in self.clauses:
            narrowed = Clause(
                c.bands & scope.bands if scope.bands is not None else c.bands,
                c.freqs & scope.freqs if scope.freqs is not None else c.freqs,
                c.spends & scope.spends if scope.spends is not None else c.spends,
                c.risk,
            )
            if narrowed.bands and narrowed.freqs and narrowed.spends:
                clauses.append(narrowed)
        return Definition(self.name, tuple(clauses)) if clauses else self

    def text(self, terms: ShopTerms) -> str:
        """The definition with the shop's numbers, e.g. "repeat buyers (2+ purchase days), ..."."""
        return "; or ".join(c.words(terms) for c in self.clauses)


def _clause(
    bands: Iterable[Band],
    freqs: Iterable[Freq] = _ALL_F,
    spends: Iterable[Spend] = _ALL_S,
    risk: Iterable[bool] = _ANY_RISK,
) -> Clause:
    return Clause(frozenset(bands), frozenset(freqs), frozenset(spends), frozenset(risk))


A, G, D, L = Band.ACTIVE, Band.LAPSING, Band.LAPSED, Band.LOST

# The table. Order matters: the first name that at least two thirds of a cluster fit is its name.
DEFINITIONS: tuple[Definition, ...] = (
    Definition("Champions", (_clause([A], _RETURNED, [Spend.HIGH]),)),
    Definition("Loyal Customers", (_clause([A], [Freq.FREQUENT]),)),
    Definition("Potential Loyalists", (_clause([A], _RETURNED),)),
    Definition("Promising", (_clause([A], [Freq.ONE_TIME], [Spend.MID, Spend.HIGH]),)),
    Definition("New Customers", (_clause([A], [Freq.ONE_TIME]),)),
    Definition("Can't Lose Them", (_clause([G, D], _RETURNED, [Spend.HIGH], [True]),)),
    Definition("At Risk", (_clause([G, D], risk=[True]),)),
    Definition("Need Attention", (_clause([G, D], _RETURNED), _clause([G], [Freq.ONE_TIME], [Spend.MID, Spend.HIGH]))),
    Definition("About To Sleep", (_clause([G], [Freq.ONE_TIME]),)),
    Definition("Hibernating", (_clause([D]),)),
    Definition("Lost", (_clause([L]),)),
)
BY_NAME: dict[str, Definition] = {d.name: d for d in DEFINITIONS}
VOCABULARY: tuple[str, ...] = tuple(d.name for d in DEFINITIONS)  # most valuable first


def vocabulary_rank(name: str) -> int:
    return VOCABULARY.index(name) if name in VOCABULARY else len(VOCABULARY)


@dataclass(frozen=True)
class Check:
    """How well a cluster's customers fit its name."""

    name: str
    fit: float  # share of customers meeting every condition
    passed: bool
    band: Band  # the band most of its customers are in (all of them, when trained)
    band_share: float
    repeat_share: float  # 2+ purchase days
    frequent_share: float
    high_spend_share: float
    low_spend_share: float
    at_risk_share: float


def check(
    name: str,
    band: np.ndarray,
    freq: np.ndarray,
    spend: np.ndarray,
    risk: np.ndarray,
    definition: Definition | None = None,
) -> Check:
    """Measure how the customers of one cluster fit the definition of ``name`` (or ``definition``,
    the name's narrowed by its qualifiers)."""
    n = max(len(band), 1)
    fit = float((definition or BY_NAME[name]).count(cells(band, freq, spend, risk)) / n) if len(band) else 0.0
    counts = np.bincount(band.astype(np.int64), minlength=len(Band))
    top = int(counts.argmax())
    return Check(
        name=name,
        fit=fit,
        passed=fit >= FIT_THRESHOLD and len(band) > 0,
        band=Band(top),
        band_share=float(counts[top] / n),
        repeat_share=float((freq >= Freq.REPEAT).sum() / n),
        frequent_share=float((freq == Freq.FREQUENT).sum() / n),
        high_spend_share=float((spend == Spend.HIGH).sum() / n),
        low_spend_share=float((spend == Spend.LOW).sum() / n),
        at_risk_share=float(np.asarray(risk, dtype=bool).sum() / n),
    )


# Every combination of the terms a definition reads, in the order ``cells`` counts them.
_CELLS = [(b, f, s, r) for b in Band for f in Freq for s in Spend for r in (False, True)]


def cells(band: np.ndarray, freq: np.ndarray, spend: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """How many customers have each combination of ``_CELLS``: one pass over them, after which
    any definition is counted in 72 steps (naming a segment of 6M customers tries a dozen). A
    million customers at a time: the codes' temporaries stay at 8 MB whatever the segment's size."""
    band, freq, spend, risk = (np.asarray(a) for a in (band, freq, spend, risk))
    out = np.zeros(len(_CELLS), dtype=np.int64)
    for start in range(0, len(band), _CHUNK):
        part = slice(start, start + _CHUNK)
        code = band[part].astype(np.int64) * len(Freq)
        code += freq[part]
        code *= len(Spend)
        code += spend[part]
        code *= 2
        code += risk[part].astype(bool)
        out += np.bincount(code, minlength=len(_CELLS))
    return out


_CHUNK = 1 << 20


def name_for(band: np.ndarray, freq: np.ndarray, spend: np.ndarray, risk: np.ndarray) -> str:
    """The first name of the table that at least two thirds of these customers fit; for a cluster
    mixing one-time and repeat buyers (the estimator merges them only when K is smaller than the
    number of strata) no name may reach that, and the first that half of them fit is taken: its
    check then fails and every listing shows its fit."""
    n = len(band)
    counted = cells(band, freq, spend, risk) if n else None
    for share in (FIT_THRESHOLD, 0.5):
        for d in DEFINITIONS:
            if counted is not None and d.count(counted) >= share * n:
                return d.name
    # Unreachable for band-pure clusters (every band ends with a name asking nothing more);
    # a mixed cluster falls back on the name of its most common band.
    top = Band(int(np.bincount(band.astype(np.int64), minlength=len(Band)).argmax())) if n else Band.LOST
    return {
        Band.ACTIVE: "New Customers",
        Band.LAPSING: "About To Sleep",
        Band.LAPSED: "Hibernating",
        Band.LOST: "Lost",
    }[top]


def name_for_profile(band: Band, freq: Freq, spend: Spend, risk: bool = False) -> str:
    """The name a single customer's own terms fit first (used to explain one answer)."""
    return name_for(np.array([band]), np.array([freq]), np.array([spend]), np.array([risk]))


# -- words -------------------------------------------------------------------------------


def _band_words(bands: frozenset[Band], terms: ShopTerms) -> str:
    ordered = sorted(bands)
    lo, hi = ordered[0], ordered[-1]
    if len(ordered) == 1:
        word = {A: "active", G: "lapsing", D: "lapsed", L: "lost"}[lo]
        return f"{word} ({terms.band_range(lo)})"
    if (lo, hi) == (G, D):
        if terms.one_time_lost == terms.repeat_lost:
            days = f"{terms.return_time + 1}–{terms.one_time_lost}"
        else:
            days = f"{terms.return_time + 1}–{terms.one_time_lost}, repeat buyers up to {terms.repeat_lost}"
        return f"past the return time but not lost (last order {days} days ago)"
    return " or ".join(_band_words(frozenset({b}), terms) for b in ordered)


def _freq_words(freqs: frozenset[Freq], terms: ShopTerms) -> str:
    if freqs == frozenset({Freq.ONE_TIME}):
        return "bought on one day only"
    if freqs == _RETURNED:
        return "bought on 2 or more days"
    if freqs == frozenset({Freq.FREQUENT}):
        return f"bought on {terms.frequent_from} or more days"
    return " or ".join(f.word for f in sorted(freqs))


def _spend_words(spends: frozenset[Spend], terms: ShopTerms) -> str:
    if spends == frozenset({Spend.HIGH}):
        return f"spent {terms.money(terms.spend_high_from, exact=True)} or more ({TOP_SPENDERS})"
    if spends == frozenset({Spend.MID, Spend.HIGH}):
        return f"spent {terms.money(terms.spend_low_below, exact=True)} or more ({NOT_LOW_SPENDERS})"
    if spends == frozenset({Spend.LOW}):
        return f"spent less than {terms.money(terms.spend_low_below, exact=True)} ({LOW_SPENDERS})"
    return " or ".join(f"{s.word} spend" for s in sorted(spends))
