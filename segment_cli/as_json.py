"""What the commands print with --json: plain data, stable keys (listed in the README)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from segmentation.serving import listing as listing_mod


def train_json(version: str, trained) -> dict[str, Any]:
    info = trained.info
    return {
        "model_version": version,
        "customers": info.customers,
        "orders": info.orders,
        "one_time_share": info.one_time_share,
        "excluded": dict(info.excluded),
        "source": info.source,
        "snapshot_date": info.snapshot_date,
        "k": info.k,
        "seed": info.seed,
        "silhouette": info.silhouette,
        "terms": trained.terms.as_json(),
        "segments": [s.as_json() for s in trained.segments],
        "at_risk": {**trained.at_risk.as_json(), "model_version": version},
        "changes": trained.changes.as_json() if trained.changes else None,
        "rule_based": trained.rule_based.as_json(),
        "timings": dict(info.timings),
        "fitted_on": getattr(trained.model, "fit_size_", info.customers),
        "rule_cells": trained.rule_cells,
        "kmeans_segments": len(trained.segments) - trained.rule_cells,
        "chance": None if trained.chance is None else trained.chance.as_json(),
        "futures": None if trained.futures is None else trained.futures.as_json(),
        "horizon_note": trained.horizon_note,
    }


def model_json(store) -> dict[str, Any]:
    """Every version with its metadata and whether it can be served (``damaged`` says why not)."""
    listing = listing_mod.summaries(store)
    serving = listing_mod.served(listing)
    return {
        "current": listing_mod.current_version(store),
        "versions": [asdict(v) for v in listing],
        "terms": serving.terms if serving else None,
        "at_risk_rule": serving.at_risk_rule if serving else None,
    }


def backtest_json(bt) -> dict[str, Any]:
    def result(r) -> dict[str, Any]:
        return {
            "cutoff": r.cutoff.isoformat(),
            "horizon_days": r.horizon,
            "customers": r.customers,
            "bought_again": r.returned,
            "base_rate": r.base_rate,
            "terms": dict(zip(("return_time", "return_window", "lost_after"), r.terms)),
            "rule_cells": r.rule_cells,
            "kmeans_segments": r.kmeans_segments,
            "segments": [
                {
                    "name": s.name,
                    "base": s.base,
                    "claimed": None if s.claimed is None else s.claimed.as_json(),
                    **s.future.as_json(),
                }
                for s in r.segments
            ],
            "at_risk": r.flagged.as_json(),
            "not_at_risk": r.not_flagged.as_json(),
            "tiers": r.tiers.as_json(),
            "auc": r.auc,
            "chance_lead": {
                k: None if v is None else {"difference": v[0], "interval": [v[1], v[2]]} for k, v in r.chance_vs.items()
            },
            "calibration": None if r.calibration is None else asdict(r.calibration),
            "claims": [asdict(c) for c in r.claims],
            "seconds": r.seconds,
        }

    return {
        "source": bt.source,
        "horizon_days": bt.horizon,
        "horizon_reason": bt.horizon_reason,
        "claims_failed": [{"cutoff": c.isoformat(), **asdict(x)} for c, x in bt.failed],
        "claims_within_chance": [{"cutoff": c.isoformat(), **asdict(x)} for c, x in bt.unsettled],
        "skipped": list(bt.skipped),
        "cutoffs": [result(r) for r in bt.results],
        "mean_auc": bt.mean_auc(),
    }


def validation_json(r) -> dict[str, Any]:
    return {
        "source": r.source,
        "customers": r.customers,
        "k": r.trained.info.k,
        "terms": r.trained.terms.as_json(),
        "segments": [asdict(s) for s in r.segments],
        "at_risk": r.at_risk.as_json(),
        "runs": [{**asdict(x), "names": list(x.names)} for x in r.runs],
        "seed_names_same": r.seed_names_same,
        "seed_max_change": r.seed_max_change,
        "at_risk_max_change": r.at_risk_max_change,
        "invariants": {**asdict(r.invariants), "hold": r.invariants.hold},
        "palive": asdict(r.palive),
        "futures": [asdict(c) for c in r.futures],
        "futures_hold": r.futures_hold,
        "tiers": None if r.trained.futures is None else r.trained.futures.as_json(),
        "passed": r.passed,
    }
