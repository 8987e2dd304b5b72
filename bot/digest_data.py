"""What a digest says, computed: segment sizes and changes, churn risk and the export of who is at risk, scored as of a day."""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentation.data.kinds import Source
from segmentation.errors import InputError
from segmentation.model.atrisk import AtRiskSummary
from segmentation.model.terms import ShopTerms
from segmentation.serving.answers import SourceScore
from segmentation.serving.served import ServedModel

STALE_AFTER_DAYS = 7


@dataclass(frozen=True)
class DigestSegment:
    """One segment's line in a digest and on the Home tab."""

    name: str
    customers: int
    share: float  # of all customers scored
    at_risk: int
    change: int | None = None  # since the previous digest; None when not compared
    new: bool = False  # not in the previous digest

    def change_text(self) -> str:
        """ " · ▲12", " · =", " · new", or nothing when not compared."""
        if self.new:
            return " · new"
        if self.change is None:
            return ""
        return " · =" if self.change == 0 else f" · {'▲' if self.change > 0 else '▼'}{abs(self.change):,}"


@dataclass
class DigestData:
    run_date: dt.date
    latest_order: dt.date
    model_version: str
    customers: int
    terms: ShopTerms
    segments: list[DigestSegment]
    at_risk: AtRiskSummary
    moved_into_at_risk: int | None
    previous_date: dt.date | None
    data_source: str = ""
    not_comparable: str | None = None  # why the previous digest is not compared with, if it is not
    at_risk_hashes: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.uint64))
    scored_as_of: dt.date | None = None  # the day scored as of; None: the run date

    @property
    def counts(self) -> dict[str, int]:
        return {s.name: s.customers for s in self.segments}

    @property
    def as_of(self) -> dt.date:
        return self.scored_as_of or self.run_date

    @property
    def stale(self) -> int | None:
        """Days between the newest order and the run date when more than ``STALE_AFTER_DAYS``."""
        age = (self.run_date - self.latest_order).days
        return age if age > STALE_AFTER_DAYS else None


def score_for_digest(served: ServedModel, source: Source, run_date: dt.date, as_of: str = "auto") -> SourceScore:
    """``source`` scored as of ``run_date``; with ``as_of="auto"``, data whose newest order is more
    than ``STALE_AFTER_DAYS`` older is scored as of its own last day instead (else everyone in an
    old export looks lost)."""
    score = served.score_source(source, run_date)
    if as_of == "auto" and (run_date - score.latest_purchase).days > STALE_AFTER_DAYS:
        return served.score_source(source, None)
    return score


@dataclass(frozen=True)
class PreviousRun:
    scheduled_for: dt.datetime
    counts: dict[str, int]
    at_risk_hashes: np.ndarray | None
    model_version: str | None = None
    data_source: str | None = None


def hash_ids(ids: pd.Series) -> np.ndarray:
    """Stable 64-bit hashes of customer ids, sorted (collisions: ~1e-7 for a million ids)."""
    return np.sort(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(np.uint64))


def pack_hashes(h: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(h, dtype="<u8").tobytes(), 1)


def unpack_hashes(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(zlib.decompress(data), dtype="<u8")


def compute(
    served: ServedModel, score: SourceScore, previous: PreviousRun | None, run_date: dt.date, data_source: str = ""
) -> DigestData:
    """Compare a source scored with the served model (inside its engine: ``score_source``) with
    the previous digest, only if that one was built with the same model on the same data (like
    with like)."""
    not_comparable = None
    if previous is not None and previous.model_version != served.version:
        not_comparable = (
            f"model changed since the last digest ({previous.model_version or 'unknown'} → "
            f"{served.version}): sizes are not compared"
        )
    elif previous is not None and previous.data_source is not None and previous.data_source != data_source:
        not_comparable = "the data source changed since the last digest: sizes are not compared"
    compared = previous if not_comparable is None else None
    summary = score.at_risk
    counts, risky_counts = score.counts, score.at_risk_counts
    n = score.customers
    segments = []
    for s in served.trained.all_segments:  # served order: most valuable first, then reserved ones
        c = s.cluster
        if s.reserved and not counts[c]:
            continue
        prev = compared.counts.get(s.name) if compared else None
        segments.append(
            DigestSegment(
                name=s.name,
                customers=int(counts[c]),
                share=counts[c] / n if n else 0.0,
                at_risk=int(risky_counts[c]),
                change=None if prev is None else int(counts[c]) - prev,
                new=compared is not None and prev is None,
            )
        )
    hashes = hash_ids(score.at_risk_rows["customer_id"])
    moved = None
    if compared is not None and compared.at_risk_hashes is not None:
        moved = int((~np.isin(hashes, compared.at_risk_hashes, assume_unique=True)).sum())
    return DigestData(
        scored_as_of=score.snapshot_date,
        run_date=run_date,
        latest_order=score.latest_purchase,
        model_version=served.version,
        customers=n,
        terms=served.terms,
        segments=segments,
        at_risk=summary,
        moved_into_at_risk=moved,
        previous_date=compared.scheduled_for.date() if compared else None,
        data_source=data_source,
        not_comparable=not_comparable,
        at_risk_hashes=hashes,
    )


def write_at_risk_as_of(ctx, as_of: dt.date, path, served: ServedModel) -> tuple[list[str], int]:
    """The at-risk customers of the current data scored as of ``as_of`` with ``served`` (the
    digest's own list, by the one at-risk definition)."""
    source = ctx.service.data_of(ctx.settings.data).source
    return served.export_at_risk(path, source_score=served.score_source(source, as_of))


def export_value(value: Any) -> tuple[str, dt.date | None]:
    """(model version, as-of date or None) from an export button's value, checked: it came back
    from Slack, so it is never trusted (the date is checked against the model in ``check_as_of``)."""
    try:
        spec = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
        raise InputError("That export button is not one of mine; ask with /segment at-risk again.")
    as_of = spec.get("as_of")
    if as_of is None:
        return spec["model"], None
    try:
        day = dt.date.fromisoformat(str(as_of))
    except ValueError:
        raise InputError("That export button carries a bad date; ask with /segment at-risk again.") from None
    return spec["model"], day


def check_as_of(day: dt.date, snapshot: dt.date, today: dt.date | None = None) -> dt.date:
    """A digest's date could only be between its model's data date and today: anything else did
    not come from one of its buttons."""
    today = today or dt.datetime.now(dt.UTC).date()
    if not snapshot <= day <= today + dt.timedelta(days=1):
        raise InputError("That export button is not from one of my digests; ask with /segment at-risk again.")
    return day
