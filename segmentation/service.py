"""Answers from the served model: predict, look up a customer, list and export segments.

The CLI and the Slack bot both call this; neither reimplements it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import playbook as playbook_mod
from .errors import InputError
from .inputs import RFM
from .model import SegmentModel
from .store import Assignments, ModelStore


@dataclass(frozen=True)
class Prediction:
    segment: str
    cluster: int
    base: str
    description: str
    actions: tuple[str, ...]
    recency: float
    frequency: float
    monetary: float
    note: str | None = None  # set when the values lie outside anything the model was trained on

    def as_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "cluster": self.cluster,
            "description": self.description,
            "actions": list(self.actions),
            "recency": self.recency,
            "frequency": self.frequency,
            "monetary": self.monetary,
            "note": self.note,
        }


@dataclass(frozen=True)
class CustomerAnswer(Prediction):
    customer_id: str = ""
    model_version: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, **super().as_json(), "model_version": self.model_version}


def default_artifacts() -> Path:
    return Path(os.environ.get("SEGMENT_ARTIFACTS", "artifacts"))


class SegmentService:
    """Holds the served model in memory and reloads it when the current version changes."""

    def __init__(self, store: ModelStore):
        self.store = store
        self._lock = threading.Lock()
        self._bundle: dict[str, Any] | None = None

    # -- the served bundle --------------------------------------------------------------
    @property
    def bundle(self) -> dict[str, Any]:
        current = self.store.current_version()
        b = self._bundle
        if b is None or b["version"] != current:
            with self._lock:
                b = self._bundle
                if b is None or b["version"] != self.store.current_version():
                    b = self._bundle = self.store.load()
        return b

    @property
    def version(self) -> str:
        return self.bundle["version"]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.bundle["metadata"]

    def _segment_by_cluster(self, bundle: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return {s["cluster"]: s for s in bundle["segments"]}

    def _answer(self, bundle: dict[str, Any], cluster: int, r: float, f: float, m: float) -> dict[str, Any]:
        seg = self._segment_by_cluster(bundle)[cluster]
        play = _play(seg)
        return dict(
            segment=seg["name"], cluster=cluster, base=seg["base"],
            description=play[0], actions=play[1], recency=r, frequency=f, monetary=m,
        )

    # -- questions ----------------------------------------------------------------------
    def predict(self, rfm: RFM) -> Prediction:
        bundle = self.bundle
        model: SegmentModel = bundle["model"]
        cluster = model.predict_one(*rfm.as_tuple())
        return Prediction(**self._answer(bundle, cluster, *rfm.as_tuple()), note=_range_note(bundle, rfm))

    def customer(self, customer_id: str) -> CustomerAnswer:
        bundle = self.bundle
        cid = customer_id.strip()
        row = Assignments(self.store.assignments_path(bundle["version"])).get(cid)
        if row is None:
            raise InputError(
                f"No customer '{cid}' in model {bundle['version']} "
                f"({bundle['metadata']['customers']:,} customers from {bundle['metadata']['source']}). "
                "Check the id (for Olist data it is the customer_unique_id)."
            )
        _, r, f, m, cluster = row
        return CustomerAnswer(
            **self._answer(bundle, cluster, r, f, m), customer_id=cid, model_version=bundle["version"]
        )

    def segments(self) -> list[dict[str, Any]]:
        """Every segment with its size at training time and the playbook's current advice."""
        out = []
        book = _playbook_or_none()
        for s in self.bundle["segments"]:
            description, actions = _play(s, book)
            out.append({**s, "description": description, "actions": list(actions)})
        return out

    def resolve_segment(self, query: str, bundle: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Segments matching ``query``: an exact name, or every cluster of a base name."""
        q = " ".join(query.split()).casefold().replace(" - ", " — ")
        bundle = bundle or self.bundle
        segs = bundle["segments"]
        exact = [s for s in segs if s["name"].casefold() == q]
        if exact:
            return exact
        by_base = [s for s in segs if s["base"].casefold() == q]
        if by_base:
            return by_base
        names = ", ".join(s["name"] for s in segs)
        raise InputError(f"No segment '{query.strip()}' in model {bundle['version']}. Segments: {names}")

    def export(self, query: str, out: str | os.PathLike) -> tuple[list[str], int]:
        """Write the customers of a segment (or of all clusters sharing a base name) as CSV."""
        return self.export_segments(self.resolve_segment(query), out)

    def export_segments(self, segments: list[dict[str, Any]], out: str | os.PathLike,
                        version: str | None = None) -> tuple[list[str], int]:
        """Write the customers of ``segments`` (as resolved from model ``version``) to ``out``."""
        out = Path(out)
        if not str(out).strip() or out.is_dir():
            raise InputError(f"'{out}' is a folder; give a file name for the CSV, e.g. --out at-risk.csv")
        if self.store.is_inside(out):
            raise InputError(f"'{out}' is inside the model folder; write the CSV somewhere else")
        names = {s["cluster"]: s["name"] for s in segments}
        n = Assignments(self.store.assignments_path(version or self.version)).write_csv(list(names), names, out)
        return list(names.values()), n

    def at_risk(self) -> dict[str, Any]:
        """Customers and revenue (their total spend) per at-risk segment, as the playbook declares them."""
        book = playbook_mod.load()
        bundle = self.bundle  # one version for the whole answer, even if a retrain lands meanwhile
        segs = [s for s in bundle["segments"] if book.is_at_risk(s["base"])]
        totals = Assignments(self.store.assignments_path(bundle["version"])).totals([s["cluster"] for s in segs]) if segs else {}
        rows = [
            {"name": s["name"], "cluster": s["cluster"], "base": s["base"],
             "customers": totals.get(s["cluster"], (0, 0.0))[0], "revenue": totals.get(s["cluster"], (0, 0.0))[1]}
            for s in segs
        ]
        return {
            "model_version": bundle["version"],
            "at_risk_names": list(book.at_risk),
            "segments": rows,
            "customers": sum(r["customers"] for r in rows),
            "revenue": sum(r["revenue"] for r in rows),
            "all_customers": bundle["metadata"]["customers"],
            "snapshot_date": bundle["metadata"]["snapshot_date"],
        }


def _range_note(bundle: dict[str, Any], rfm: RFM) -> str | None:
    ranges = bundle["metadata"].get("ranges")
    if not ranges:
        return None
    outside = [
        f"{dim} {value:,.0f} (trained on {lo:,.0f} to {hi:,.0f})"
        for dim, value in zip(("recency", "frequency", "monetary"), rfm.as_tuple())
        for lo, hi in [ranges[dim]]
        if not lo <= value <= hi
    ]
    if not outside:
        return None
    return "Beyond the training data: " + "; ".join(outside) + ". This is the nearest segment, an extrapolation."


def _playbook_or_none() -> playbook_mod.Playbook | None:
    try:
        return playbook_mod.load()
    except playbook_mod.PlaybookError:
        return None


def _play(segment: dict[str, Any], book: playbook_mod.Playbook | None = None) -> tuple[str, tuple[str, ...]]:
    """The playbook's current text for a segment; the copy saved at training if it is gone."""
    book = book or _playbook_or_none()
    if book is not None and segment["base"] in book.plays:
        play = book.play(segment["base"])
        return play.description, play.actions
    return segment["description"], tuple(segment["actions"])
