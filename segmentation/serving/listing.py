"""The model versions on disk as typed summaries, for listings: read from each manifest without
verifying it (a damaged version is listed as damaged, never breaks the listing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmentation.errors import SegmentationError
from segmentation.serving.store import ModelStore

LISTED = ("trained_at", "trained_by", "source", "customers", "k", "seed", "silhouette")


@dataclass(frozen=True)
class VersionSummary:
    version: str
    current: bool
    damaged: str | None  # why it cannot be served, or None
    trained_at: str | None
    trained_by: str | None
    source: str | None
    customers: int | None
    k: int | None
    seed: int | None
    silhouette: float | None
    terms: dict[str, Any] | None  # the shop's terms as saved (ShopTerms fields)
    at_risk_rule: dict[str, Any] | None


def current_version(store: ModelStore) -> str | None:
    try:
        return store.current_version()
    except SegmentationError:
        return None


def summaries(store: ModelStore) -> list[VersionSummary]:
    """Every version, oldest first."""
    current = current_version(store)
    out = []
    for v in store.versions():
        manifest: dict[str, Any]
        try:
            manifest = store.info(v, verify=False).manifest
        except SegmentationError:
            manifest = {}
        found = manifest.get("metadata")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        out.append(
            VersionSummary(
                version=v,
                current=v == current,
                damaged=store.problem(v),
                **{k: meta.get(k) for k in LISTED},
                terms=manifest.get("terms"),
                at_risk_rule=manifest.get("at_risk_rule"),
            )
        )
    return out


def served(listing: list[VersionSummary]) -> VersionSummary | None:
    """The version that serves: the current one, if it is not damaged."""
    return next((v for v in listing if v.current and not v.damaged), None)
