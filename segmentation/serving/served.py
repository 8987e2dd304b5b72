"""One served model version, read-only: predict a profile, look up a customer, list, score and
export segments. ``SegmentService`` (service.py) hands these out."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation.data.kinds import Source
from segmentation.errors import InputError, ModelIntegrityError
from segmentation.model import playbook as playbook_mod
from segmentation.model.atrisk import AtRiskSummary, SegmentRisk, expected_value, summarise
from segmentation.model.compiled import scored_ctes
from segmentation.model.definitions import BY_NAME, name_for_profile
from segmentation.model.estimator import FEATURES, kinds_of
from segmentation.model.segments import ModelInfo, Segment, TrainedModel
from segmentation.model.terms import Band, Freq, ShopTerms, Spend
from segmentation.serving.answers import (
    CustomerAnswer,
    Prediction,
    Scored,
    SourceScore,
    fits_definition,
    levels,
    levels_of,
)
from segmentation.serving.assignments import Assignments, CustomerRow
from segmentation.serving.atomic import output_file
from segmentation.serving.exports import frame_rows, write_customers_csv
from segmentation.serving.inputs import RFM, shown
from segmentation.serving.store import ModelStore

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ServedModel:
    """One model version, read-only: everything an answer needs."""

    version: str
    trained: TrainedModel
    assignments: Assignments  # verified against the signed manifest

    # -- what it is ---------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self.trained.info

    @property
    def terms(self) -> ShopTerms:
        return self.trained.terms

    def segments(self, book: playbook_mod.Playbook | None = None) -> tuple[Segment, ...]:
        """Every segment with its size at training and the playbook's current advice."""
        book = book or _playbook_or_none()
        return tuple(replace(s, **_play(s, book)) for s in self.trained.segments)

    def segment(self, cluster: int) -> Segment:
        try:
            return self.trained.by_cluster()[cluster]
        except KeyError:
            raise ModelIntegrityError(f"model {self.version} has no cluster {cluster}; retrain it") from None

    def resolve(self, query: str) -> tuple[Segment, ...]:
        """Segments matching ``query``: an exact name, or every cluster of a base name."""
        q = " ".join(query.split()).casefold().replace(" - ", " — ")
        segs = self.trained.all_segments
        exact = tuple(s for s in segs if s.name.casefold() == q)
        if exact:
            return exact
        by_base = tuple(s for s in segs if s.base.casefold() == q)
        if by_base:
            return by_base
        names = "; ".join(s.name for s in self.trained.segments)
        raise InputError(f"No segment '{shown(query, 60)}' in model {self.version}. Segments: {names}")

    # -- questions ----------------------------------------------------------------------
    def _answer(
        self,
        cluster: int,
        r: float,
        f: float,
        m: float,
        occasions: float,
        at_risk: bool,
        book: playbook_mod.Playbook | None,
        chance: float | None = None,
    ) -> dict[str, Any]:
        seg = self.segment(cluster)
        play = _play(seg, book or _playbook_or_none())
        typical, persona, future = self._texts(seg)
        return dict(
            segment=seg.name,
            cluster=cluster,
            base=seg.base,
            band=seg.band.word,
            description=play["description"],
            actions=play["actions"],
            definition=seg.definition,
            typical=typical,
            segment_customers=seg.customers,
            fit=seg.check.fit,
            typical_values=(seg.recency_median, seg.frequency_median, seg.monetary_median),
            recency=r,
            frequency=f,
            monetary=m,
            occasions=occasions,
            at_risk=at_risk,
            levels=levels(self.terms, r, occasions, m),
            fits_definition=fits_definition(self.terms, seg.defined_by, r, occasions, m, at_risk),
            model_version=self.version,
            currency=self.terms.currency,
            persona=persona,
            chance=chance,
            horizon=self.trained.horizon,
            future=future,
        )

    def _texts(self, seg: Segment) -> tuple[str, str | None, str | None]:
        """A segment's typical customer, persona and outcome lines: fixed for a model version,
        so worked out once per segment (every lookup shows them)."""
        cache = self.__dict__.setdefault("_texts_cache", {})  # frozen: a memo, not state
        texts = cache.get(seg.cluster)
        if texts is None:
            persona = seg.persona.line() if seg.persona is not None else None
            texts = cache[seg.cluster] = (seg.typical(self.terms), persona, seg.future_text(self.trained.futures))
        return texts

    def predict(self, rfm: RFM, book: playbook_mod.Playbook | None = None) -> Prediction:
        """The segment of a typed profile. Its orders count as separate purchase days, and its
        own usual gap is unknown: the chance to buy again takes it to be the shop's return time."""
        r, f, m = rfm.as_tuple()
        model, basis = self.trained.chance, None
        gap = float(self.terms.return_time) if f >= 2 else np.nan
        if model is not None:
            today, last_order = model.now_and_right_after(r, f, m, gap)
            now, then = np.array([today]), np.array([last_order])
            chance: float | None = today
            if f >= 2:
                basis = f"taking their orders to be the shop's return time, {self.terms.return_time} days, apart"
        else:
            now = then = np.array([np.nan])
            chance = None
        flag = bool(self.trained.rule.flags(self.terms, [r], [f], [m], now, then)[0])
        nearest = self.trained.model.predict_one(r, f, m, int(kinds_of([f], [flag])[0]))
        cluster, own = self._meeting(nearest, r, f, m, flag)
        ans = self._answer(cluster, r, f, m, f, flag, book, chance)
        if own is not None:  # no segment of this model is made of customers like this one
            play = book or _playbook_or_none()
            words = play.play(own) if play is not None and own in play.plays else None
            ans.update(
                segment=own,
                base=own,
                description=words.description if words else ans["description"],
                actions=words.actions if words else ans["actions"],
                definition=BY_NAME[own].text(self.terms),
                fits_definition=True,
            )
        shown_by = self.segment(cluster).name
        return Prediction(
            **ans,
            note=self._range_note(rfm),
            chance_basis=basis,
            nearest=None if self.segment(nearest).name == ans["segment"] else self.segment(nearest).name,
            numbers_of=shown_by,
        )

    def _meeting(self, nearest: int, r: float, f: float, m: float, flag: bool) -> tuple[int, str | None]:
        """(the segment to answer a profile with, the name by the definitions when no segment of
        this model meets it). The answer is the segment whose definition the profile meets, nearest
        to it when several do; when none does, the nearest segment's numbers are shown under the
        name the profile's own terms give (``name_for_profile``)."""
        levels = levels_of(self.terms, r, f, m)  # once, not once per segment
        meets = [
            s.cluster
            for s in self.trained.segments
            if s.customers and (s.defined_by is None or s.defined_by.holds_one(*levels, flag))
        ]
        if nearest in meets:
            return nearest, None
        if not meets:
            t = self.terms
            band, freq, spend = t.bands([r], [f])[0], t.freqs([f])[0], t.spends([m])[0]
            own = name_for_profile(Band(band), Freq(freq), Spend(spend), flag)
            same = [s.cluster for s in self.trained.segments if s.customers and s.base == own]
            if not same:  # no segment carries the name the definitions give: say that name
                return nearest, own
            # segments of that name exist, qualified so that the profile meets none of them: the
            # nearest of them, and the answer says it does not meet its (qualified) definition
            return self._nearest_of(same, r, f, m), None
        return self._nearest_of(meets, r, f, m), None

    def _nearest_of(self, clusters: list[int], r: float, f: float, m: float) -> int:
        z = self.trained.model.transform(np.array([[r, f, m]], dtype=np.float64))[0]
        centres = self.trained.model.cluster_centers_[clusters]
        return clusters[int(np.argmin(((centres - z) ** 2).sum(axis=1)))]

    def customer(self, customer_id: str, book: playbook_mod.Playbook | None = None) -> CustomerAnswer:
        cid = customer_id.strip()
        row = self.assignments.get(cid)
        if row is None:
            raise InputError(
                f"No customer '{shown(cid, 60)}' in model {self.version} "
                f"({self.info.customers:,} customers from {self.info.source}). "
                "Check the id (for Olist data it is the customer_unique_id)."
            )
        ans = self._answer(
            row.cluster, row.recency, row.frequency, row.monetary, row.occasions, row.at_risk, book, row.chance
        )
        return CustomerAnswer(**ans, customer_id=cid, purchase_days=row.occasions, usual_gap=row.gap)

    def score(self, frame: pd.DataFrame) -> Scored:
        """Every customer of an RFM frame: cluster (nearest centre in their band) and at-risk flag."""
        model = self.trained.chance
        flags = self.trained.rule.frame_flags(self.terms, frame, model)
        labels = self.trained.model.predict(frame[FEATURES].to_numpy(np.float64), kinds_of(frame["occasions"], flags))
        chance = None
        if model is not None:
            chance = model.now(*(frame[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap")))
        return Scored(frame, labels, flags, chance)

    def at_risk(self, scored: Scored | None = None, as_of: str | None = None) -> AtRiskSummary:
        """Churn risk over the training customers (default) or a freshly scored frame."""
        if scored is None:
            return replace(self.trained.at_risk, model_version=self.version)
        names = {s.cluster: s.name for s in self.trained.all_segments}
        m, o = scored.frame["monetary"].to_numpy(), scored.frame["occasions"].to_numpy()
        chance = scored.chance if scored.chance is not None else np.full(len(m), np.nan)
        return summarise(
            scored.at_risk,
            expected_value(chance, m, o),
            m,
            scored.labels,
            names,
            [s.cluster for s in self.trained.all_segments],
            self.risk_text,
            self.version,
            as_of or self.info.snapshot_date,
            self.trained.horizon,
        )

    @property
    def risk_text(self) -> str:
        """Who counts as at risk, in the shop's terms."""
        return self.trained.rule.text(self.terms, self.trained.horizon)

    def score_source(self, source: Source, as_of: dt.date | None = None) -> SourceScore:
        """Score every customer of ``source`` inside its engine (DuckDB for files, the database,
        or Spark) with this model compiled to SQL; only totals and the at-risk rows come back."""

        from segmentation.data.scoring import score_in_engine  # lazy: the engines, not for a lookup

        result = score_in_engine(
            source, as_of, scored_ctes(self.trained.model, self.trained.rule, self.terms, self.trained.chance)
        )
        k = len(self.trained.model.cluster_centers_)
        t = result.tally
        risky = t["at_risk"].to_numpy() == 1
        cluster = t["cluster"].to_numpy()
        n = t["customers"].to_numpy()
        revenue = t["revenue"].to_numpy(np.float64)
        expected = t["expected"].to_numpy(np.float64)
        counts = np.bincount(cluster, weights=n, minlength=k).astype(np.int64)
        risk_counts = np.bincount(cluster[risky], weights=n[risky], minlength=k).astype(np.int64)
        risk_revenue = np.bincount(cluster[risky], weights=expected[risky], minlength=k)
        order = [s.cluster for s in self.trained.all_segments]
        names = {s.cluster: s.name for s in self.trained.all_segments}
        summary = AtRiskSummary(
            customers=int(n[risky].sum()),
            revenue=float(expected[risky].sum()),
            all_customers=int(n.sum()),
            all_revenue=float(expected.sum()),
            definition=self.risk_text,
            by_segment=tuple(
                SegmentRisk(names[c], int(risk_counts[c]), float(risk_revenue[c])) for c in order if risk_counts[c]
            ),
            model_version=self.version,
            as_of=result.snapshot_date.isoformat(),
            past_spend=float(revenue[risky].sum()),
            horizon=self.trained.horizon,
        )
        return SourceScore(
            customers=int(n.sum()),
            snapshot_date=result.snapshot_date,
            latest_purchase=result.latest_purchase,
            counts=counts,
            at_risk_counts=risk_counts,
            at_risk=summary,
            at_risk_rows=result.at_risk_rows,
        )

    # -- exports ------------------------------------------------------------------------
    def export(
        self, segments: Iterable[Segment], out: str | os.PathLike, store: ModelStore | None = None
    ) -> tuple[list[str], int]:
        """The customers of ``segments`` as assigned at training, to a CSV file."""
        segments = list(segments)
        names = {s.cluster: s.name for s in segments}
        rows = self.assignments.members(list(names))
        return list(names.values()), write_customers_csv(rows, names, _out_path(out, store), self.trained.horizon)

    def export_at_risk(
        self,
        out: str | os.PathLike,
        store: ModelStore | None = None,
        scored: Scored | None = None,
        source_score: SourceScore | None = None,
    ) -> tuple[list[str], int]:
        """The customers at risk, as flagged at training (default), in a freshly scored frame, or
        scored inside a source's engine."""
        names = {s.cluster: s.name for s in self.trained.all_segments}
        rows: Iterable[CustomerRow]
        if source_score is not None:
            f = source_score.at_risk_rows
            rows = frame_rows(f, f["cluster"].to_numpy(), np.ones(len(f), dtype=bool))
            present = [s.name for s in source_score.at_risk.by_segment]
        elif scored is None:
            rows = self.assignments.members(at_risk_only=True)
            present = [s.name for s in self.at_risk().by_segment]
        else:
            keep = scored.at_risk
            chance = None if scored.chance is None else scored.chance[keep]
            rows = frame_rows(scored.frame[keep], scored.labels[keep], keep[keep], chance)
            present = [s.name for s in self.at_risk(scored).by_segment]
        return present, write_customers_csv(rows, names, _out_path(out, store), self.trained.horizon)

    def _range_note(self, rfm: RFM) -> str | None:
        outside = [
            f"{dim} {value:,.0f} (trained on {lo:,.0f} to {hi:,.0f})"
            for dim, value in zip(("recency", "frequency", "monetary"), rfm.as_tuple())
            for lo, hi in [self.info.ranges[dim]]
            if not lo <= value <= hi
        ]
        if not outside:
            return None
        return "Beyond the training data: " + "; ".join(outside) + ". This is the nearest segment, an extrapolation."


def _out_path(out: str | os.PathLike, store: ModelStore | None) -> Path:
    out = output_file(out, "at-risk.csv")
    if store is not None and store.is_inside(out):
        raise InputError(f"'{out}' is inside the model folder; write the CSV somewhere else")
    return out


def _playbook_or_none() -> playbook_mod.Playbook | None:
    try:
        return playbook_mod.load()
    except playbook_mod.PlaybookError:
        return None


def _play(segment: Segment, book: playbook_mod.Playbook | None) -> dict[str, Any]:
    """The playbook's current text for a segment; the copy saved at training if it is gone."""
    if book is not None and segment.base in book.plays:
        play = book.play(segment.base)
        return {"description": play.description, "actions": play.actions}
    return {"description": segment.description, "actions": segment.actions}
