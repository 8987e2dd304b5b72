"""The typed, immutable results of training: segments, model information, the trained model.

These are what is saved in a model version and what the CLI and the bot read; nothing crosses
a module boundary as a loose dict.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from segmentation.model.atrisk import AtRiskRule, AtRiskSummary
from segmentation.model.chance import ChanceModel
from segmentation.model.definitions import BY_NAME, Check, Definition, Scope
from segmentation.model.estimator import SegmentModel
from segmentation.model.outlook import Future, TierFutures
from segmentation.model.personas import Persona
from segmentation.model.terms import Band, ShopTerms


def _dates(cutoffs) -> str:
    if len(cutoffs) == 1:
        return cutoffs[0].isoformat()
    return f"{len(cutoffs)} earlier dates ({min(cutoffs).isoformat()} to {max(cutoffs).isoformat()})"


def _orders(median: float) -> str:
    """ "2 orders"; a median between two whole numbers (an even count) as "2–3 orders", never "2.5 orders"."""
    if float(median).is_integer():
        return plural(median, "order")
    low = int(median // 1)
    return f"{low:,}–{low + 1:,} orders"


def plural(n: float, word: str) -> str:
    n_text = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return f"{n_text} {word}{'' if n == 1 else 's'}"


@functools.lru_cache(maxsize=4096)
def _definition(base: str, scope: Scope | None) -> Definition:
    """A base name's definition narrowed by a scope (both immutable: built once per pair)."""
    return BY_NAME[base].narrowed(scope)


@dataclass(frozen=True)
class Segment:
    cluster: int
    name: str  # unique within the model, e.g. "Lost — high spend"
    base: str  # the defined name, the key into the playbook
    band: Band
    definition: str  # its definition in this shop's terms: the base name's, with its qualifiers' conditions
    check: Check  # how its customers fit that definition, at training
    customers: int
    share: float
    revenue: float
    revenue_share: float
    recency_median: float
    frequency_median: float
    frequency_mean: float
    occasions_median: float
    monetary_median: float
    at_risk: int  # customers at risk in it, at training
    centroid: tuple[float, float, float]  # days, purchase days, money
    description: str  # the playbook's text at training (answers use the current playbook)
    actions: tuple[str, ...]
    reserved: bool = False  # kept for customers who age into a band or kind nobody was in at training
    persona: Persona | None = None  # what they buy, how they pay, where from (when the data says)
    future: Future | None = None  # what its customers a horizon before the end did next (measured at training)
    scope: Scope | None = None  # what its qualifier words add to the base definition (None: nothing)

    @property
    def defined_by(self) -> Definition:
        """The definition its customers are checked against: the base name's, narrowed by its qualifiers."""
        return _definition(self.base, self.scope)

    def typical(self, terms: ShopTerms) -> str:
        """E.g. "typically 268 days since the last order, 1 order, R$644"."""
        if self.reserved:
            return (
                "no customer was like this at training: a segment kept for customers who reach "
                f"this band ({terms.band_range(self.band)})"
            )
        return (
            f"typically {plural(round(self.recency_median), 'day')} since the last order, "
            f"{_orders(self.frequency_median)}, {terms.money(self.monetary_median)}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "cluster": self.cluster,
            "band": self.band.word,
            "customers": self.customers,
            "share": self.share,
            "revenue": round(self.revenue, 2),
            "revenue_share": self.revenue_share,
            "recency_median": self.recency_median,
            "frequency_median": self.frequency_median,
            "frequency_mean": self.frequency_mean,
            "monetary_median": self.monetary_median,
            "at_risk": self.at_risk,
            "definition": self.definition,
            "fit": self.check.fit,
            "definition_holds": self.check.passed,
            "reserved": self.reserved,
            "persona": None if self.persona is None else self.persona.as_json(),
            "future": None if self.future is None else self.future.as_json(),
        }

    def future_text(self, futures: TierFutures | None) -> str | None:
        """E.g. "of the customers it held at 4 earlier dates (2017-03-03 to 2017-12-14), 11% (9–13%)
        bought again within 258 days"."""
        f = self.future
        if f is None or futures is None:
            return None
        when = _dates(futures.cutoffs)
        if not f.customers:
            return f"no customer was like this at {when}, so what they do next is not measured"
        lo, hi = f.interval
        return (
            f"of the {f.customers:,} customers it held at {when}, {f.rate:.1%} ({lo:.1%}–{hi:.1%}) bought again "
            f"within {futures.horizon:,} days"
        )


@dataclass(frozen=True)
class NameChanges:
    """How the segment names of a retrained model differ from the model it replaced."""

    previous_version: str
    appeared: tuple[str, ...]
    vanished: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]  # (old name, new name): the same customers, a new name

    @property
    def any(self) -> bool:
        return bool(self.appeared or self.vanished or self.renamed)

    def lines(self) -> list[str]:
        out = []
        if self.renamed:
            out.append("Renamed: " + "; ".join(f"{a} → {b}" for a, b in self.renamed))
        if self.appeared:
            out.append("Appeared: " + ", ".join(self.appeared))
        if self.vanished:
            out.append("Vanished: " + ", ".join(self.vanished))
        return out or ["Same segment names as before."]

    def as_json(self) -> dict[str, Any]:
        return {
            "previous_version": self.previous_version,
            "appeared": list(self.appeared),
            "vanished": list(self.vanished),
            "renamed": [list(p) for p in self.renamed],
        }


@dataclass(frozen=True)
class RuleBasedRow:
    name: str
    customers: int
    one_time_buyers: int


@dataclass(frozen=True)
class RuleBasedComparison:
    segments: tuple[RuleBasedRow, ...]
    champions: Mapping[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"segments": [asdict(s) for s in self.segments], "champions": dict(self.champions)}


@dataclass(frozen=True)
class ModelInfo:
    trained_at: str
    trained_by: str
    source: str
    data: str | None
    orders: int
    customers: int
    one_time_share: float
    excluded: Mapping[str, int]
    snapshot_date: str
    latest_purchase: str
    k: int
    seed: int
    ranges: Mapping[str, tuple[float, float]]
    silhouette: float | None
    silhouette_sample: int
    library_versions: Mapping[str, str]
    schema_version: int
    timings: Mapping[str, float] = field(default_factory=dict)
    data_spec: str | None = None  # one line that opens the source again ("": the built-in sample; None: unknown)

    # typed views of the stored ISO text (kept as text: it is what the manifest and --json carry)
    @property
    def snapshot_day(self) -> dt.date:
        return dt.date.fromisoformat(self.snapshot_date)

    @property
    def latest_purchase_day(self) -> dt.date:
        return dt.date.fromisoformat(self.latest_purchase)

    @property
    def trained_when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.trained_at)

    @property
    def trained_minute(self) -> str:
        """ "2026-12-02 14:30": when it was trained, to the minute (UTC)."""
        return f"{self.trained_when:%Y-%m-%d %H:%M}"

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["excluded"] = dict(self.excluded)
        d["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        d["library_versions"] = dict(self.library_versions)
        d["timings"] = dict(self.timings)
        return d


@dataclass(frozen=True)
class TrainedModel:
    """Everything one model version knows. Saved whole; served read-only."""

    model: SegmentModel
    terms: ShopTerms
    rule: AtRiskRule
    segments: tuple[Segment, ...]  # in display order: most valuable first
    at_risk: AtRiskSummary  # at training, over the training customers
    rule_based: RuleBasedComparison
    info: ModelInfo
    changes: NameChanges | None = None  # against the model it replaced, if any
    reserved: tuple[Segment, ...] = ()  # clusters with no customers at training (see model.py)
    chance: ChanceModel | None = None  # the chance to buy again within the horizon (None: history too short)
    futures: TierFutures | None = None  # what each tier did next, measured a horizon before the end
    horizon_note: str = ""  # why the horizon is shorter than the return window, or there is no chance

    @property
    def horizon(self) -> int | None:
        return None if self.chance is None else self.chance.horizon

    @property
    def rule_cells(self) -> int:
        """Segments that are a whole recency band and kind of customer (no KMeans split)."""
        per = self.model.clusters_per_stratum_
        return sum(1 for s in self.segments if per[int(self.model.center_stratum_[s.cluster])] == 1)

    def structure(self) -> str:
        """How many segments are rule cells and how many KMeans splits, in words."""
        cells = self.rule_cells
        split = len(self.segments) - cells
        fewer = ""
        if len(self.segments) < self.info.k:
            floor = getattr(self.model, "min_size_", None)
            fewer = f" (fewer than K={self.info.k}: no segment may have fewer than {floor or 25:,} customers)"
        return (
            f"{len(self.segments)} segments{fewer}: {cells} a whole recency band and kind of customer (a rule "
            f"cell, no clustering), {split} from KMeans splitting a band and kind into "
            f"{'groups' if split != 1 else 'a group'} by recency, purchase days and spend"
        )

    @property
    def all_segments(self) -> tuple[Segment, ...]:
        return self.segments + self.reserved

    def by_cluster(self) -> dict[int, Segment]:
        cached = self.__dict__.get("_by_cluster")
        if cached is None:
            cached = {s.cluster: s for s in self.all_segments}
            object.__setattr__(self, "_by_cluster", cached)  # a cache of immutable data, not state
        return cached

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_by_cluster", None)
        return state
