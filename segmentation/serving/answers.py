"""The typed answers the service gives: a profile's or a customer's segment with its numbers, scored tallies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.model.atrisk import AtRiskSummary
from segmentation.model.definitions import Definition
from segmentation.model.terms import LOW_SPENDERS, TOP_SPENDERS, ShopTerms, Spend

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Prediction:
    segment: str
    cluster: int
    base: str
    band: str
    description: str
    actions: tuple[str, ...]
    definition: str  # the segment's definition in the shop's terms
    typical: str  # the segment's typical numbers, in words
    segment_customers: int
    fit: float  # share of the segment's customers meeting its definition, at training
    typical_values: tuple[float, float, float]  # median days, orders, spend of the segment
    recency: float
    frequency: float
    monetary: float
    occasions: float
    at_risk: bool
    levels: tuple[str, str, str]  # this customer's own recency band, kind of buyer, spend level
    model_version: str
    currency: str = ""
    note: str | None = None  # set when the values lie outside anything the model was trained on
    persona: str | None = None  # what the segment buys, how it pays, where from (when the data said)
    fits_definition: bool = True  # whether this customer meets the segment's definition themselves
    chance: float | None = None  # their chance to buy again within ``horizon`` days
    horizon: int | None = None
    chance_basis: str | None = None  # what the chance assumes (a typed profile's unknown rhythm)
    future: str | None = None  # the segment's measured future, in words
    nearest: str | None = None  # the segment nearest by the numbers alone, when it is not ``segment``
    numbers_of: str = ""  # the segment whose numbers are shown ("": ``segment`` itself)

    @property
    def chance_text(self) -> str | None:
        """E.g. "chance to buy again in the next 120 days: 14%"."""
        if self.chance is None or self.horizon is None:
            return None
        basis = f" ({self.chance_basis})" if self.chance_basis else ""
        return f"Chance to buy again in the next {self.horizon:,} days: {percent(self.chance)}{basis}."

    @property
    def own_name(self) -> bool:
        """Whether ``segment`` is a name from the definitions that no segment of the model carries
        (the numbers shown are then those of ``numbers_of``, the nearest segment)."""
        return bool(self.numbers_of) and self.numbers_of != self.segment

    @property
    def segment_label(self) -> str:
        """ "The segment", or "The nearest segment, Champions," when the profile has no segment."""
        return f"The nearest segment, {self.numbers_of}," if self.own_name else "The segment"

    @property
    def outside(self) -> str | None:
        """Said when the answer is not simply the segment nearest to these numbers."""
        if self.own_name:
            return (
                f"No segment of this model is made of customers like this: by the definitions they are "
                f"{self.segment}, who were the majority of no segment at training; the numbers are those of "
                f"the nearest segment, {self.numbers_of}, whose definition they do not meet."
            )
        if self.nearest:
            return (
                f"By the numbers alone the nearest segment is {self.nearest}, whose definition these numbers "
                f"do not meet; {self.segment} is the nearest whose definition they meet."
            )
        if self.fits_definition:
            return None
        share = f", as {1 - self.fit:.0%} of its customers do not" if self.segment_customers and self.fit < 1 else ""
        return f"This customer does not meet it: {self.segment} is the segment nearest to these numbers{share}."

    def as_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "cluster": self.cluster,
            "base": self.base,
            "band": self.band,
            "description": self.description,
            "definition": self.definition,
            "actions": list(self.actions),
            "typical": {
                "text": self.typical,
                "customers": self.segment_customers,
                "fit": self.fit,
                "recency_median": self.typical_values[0],
                "frequency_median": self.typical_values[1],
                "monetary_median": self.typical_values[2],
            },
            "recency": self.recency,
            "frequency": self.frequency,
            "monetary": self.monetary,
            "at_risk": self.at_risk,
            "levels": {"recency": self.levels[0], "frequency": self.levels[1], "spend": self.levels[2]},
            "fits_definition": self.fits_definition,
            "chance": self.chance,
            "horizon_days": self.horizon,
            "chance_basis": self.chance_basis,
            "segment_future": self.future,
            "nearest_segment": self.nearest,
            "numbers_of": self.numbers_of or self.segment,
            "note": self.note,
            "persona": self.persona,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class CustomerAnswer(Prediction):
    customer_id: str = ""
    purchase_days: int = 0
    usual_gap: float | None = None  # days between their purchase days

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            **super().as_json(),
            "purchase_days": self.purchase_days,
            "usual_gap_days": self.usual_gap,
        }


@dataclass(frozen=True)
class Scored:
    """A freshly scored RFM frame: every customer's cluster and at-risk flag."""

    frame: pd.DataFrame
    labels: np.ndarray
    at_risk: np.ndarray
    chance: np.ndarray | None = None  # each customer's chance to buy again (None: no chance model)


@dataclass(frozen=True)
class SourceScore:
    """Every customer of a source scored as of a date inside the source's engine: totals per
    segment and the at-risk customers' rows, nothing else."""

    customers: int
    snapshot_date: dt.date
    latest_purchase: dt.date
    counts: np.ndarray  # customers per cluster
    at_risk_counts: np.ndarray  # customers at risk per cluster
    at_risk: AtRiskSummary
    at_risk_rows: pd.DataFrame  # customer_id, recency, frequency, monetary, occasions, gap, cluster


def share_text(x: float) -> str:
    """A share as a percentage, everywhere the same: a tiny one is "<0.1%", never "0.0%"."""
    return "<0.1%" if 0 < x < 0.0005 else f"{x:.1%}"


def percent(p: float) -> str:
    """A chance as a marketer reads it: 14%, 2.3%, 0.4%, <0.1%."""
    if p >= 0.995:
        return ">99%"
    if p >= 0.095:
        return f"{p:.0%}"
    if p >= 0.001:
        return f"{p:.1%}"
    return "<0.1%"


SPEND_WORDS = {Spend.HIGH: f"{TOP_SPENDERS} by spend", Spend.MID: "mid spend", Spend.LOW: f"{LOW_SPENDERS} by spend"}


def levels(terms: ShopTerms, recency: float, occasions: float, monetary: float) -> tuple[str, str, str]:
    """One customer's own standing in the shop's terms, e.g. ("lapsing", "one-time", "top 20% by spend")."""
    return terms.band(recency, occasions).word, terms.freq(occasions).word, SPEND_WORDS[terms.spend(monetary)]


def fits_definition(
    terms: ShopTerms, definition: Definition | None, recency: float, occasions: float, monetary: float, at_risk: bool
) -> bool:
    """Whether one customer meets a segment's definition (a segment is named for the clear
    majority of its customers: someone can sit in it, nearest to its centre, without meeting it)."""
    if definition is None:
        return True
    return definition.holds_one(*levels_of(terms, recency, occasions, monetary), at_risk)


def levels_of(terms: ShopTerms, recency: float, occasions: float, monetary: float) -> tuple[int, int, int]:
    """One customer's (band, kind of buyer, spend level), as ``Definition.holds_one`` takes them."""
    return int(terms.band(recency, occasions)), int(terms.freq(occasions)), int(terms.spend(monetary))
