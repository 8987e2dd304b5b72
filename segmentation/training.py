"""Training: source → RFM → model → named segments → a saved, verified version."""

from __future__ import annotations

import contextlib
import datetime as dt
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import playbook as playbook_mod
from .errors import DataError
from .model import DEFAULT_K, SegmentModel, rule_based_segments, silhouette
from .naming import name_clusters, vocabulary_rank
from .sources import RFMTable, Source, load_rfm
from .store import SCHEMA_VERSION, ModelStore

Progress = Callable[[str], None]
MAX_K = 30


@dataclass
class Timer:
    progress: Progress | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, key: str, label: str) -> Iterator[None]:
        if self.progress:
            self.progress(f"{label}…")
        t = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - t, 3)


def segment_summaries(rfm: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per cluster: customers, share, median recency, mean frequency, median monetary."""
    g = rfm.assign(cluster=labels).groupby("cluster")
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "recency_median": g["recency"].median(),
            "frequency_mean": g["frequency"].mean(),
            "monetary_median": g["monetary"].median(),
        }
    )
    out["share"] = out["customers"] / len(rfm)
    return out


def _library_versions() -> dict[str, str]:
    import duckdb
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "duckdb": duckdb.__version__,
    }


def rule_based_comparison(rfm: pd.DataFrame, kmeans_base: pd.Series) -> dict[str, Any]:
    names = rule_based_segments(rfm)
    one_time = rfm["frequency"].to_numpy() == 1
    counts = names.value_counts()
    one_time_counts = names[one_time].value_counts()
    segments = [
        {"name": n, "customers": int(counts[n]), "one_time_buyers": int(one_time_counts.get(n, 0))}
        for n in sorted(counts.index, key=vocabulary_rank)
    ]
    km_champions = kmeans_base == "Champions"
    return {
        "segments": segments,
        "champions": {
            "rule_based": int(counts.get("Champions", 0)),
            "rule_based_one_time_buyers": int(one_time_counts.get("Champions", 0)),
            "kmeans": int(km_champions.sum()),
            "kmeans_one_time_buyers": int((km_champions.to_numpy() & one_time).sum()),
        },
    }


def fit_bundle(
    table: RFMTable,
    *,
    k: int = DEFAULT_K,
    trained_by: str = "cli",
    data_ref: str | None = None,
    timer: Timer | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit, name and summarise. Returns the bundle and the per-customer assignments."""
    timer = timer or Timer()
    rfm = table.frame
    if not 2 <= k <= MAX_K:
        raise DataError(f"--k must be between 2 and {MAX_K}; got {k}")
    X = rfm[["recency", "frequency", "monetary"]].to_numpy(dtype=np.float64)
    distinct = len(np.unique(X[:10_000], axis=0))
    if distinct < k:
        distinct = len(np.unique(X, axis=0))
    if distinct < k:
        raise DataError(
            f"{table.source}: only {distinct} distinct R/F/M profile{'s' if distinct != 1 else ''}, "
            f"too few for {k} segments; use more data or a smaller --k"
        )
    with timer.step("fit", f"Clustering {len(X):,} customers into {k} segments"):
        model = SegmentModel(n_clusters=k).fit(X)
        labels = model.labels_
    with timer.step("naming", "Naming segments and comparing with the quantile rules"):
        named = name_clusters(model.centroids_, model.kmeans_.cluster_centers_, X)
        summary = segment_summaries(rfm, labels)
        book = playbook_mod.load()
        base_of = {c.cluster: c.base for c in named}
        kmeans_base = pd.Series([base_of[c] for c in labels], index=rfm.index)
        rule_based = rule_based_comparison(rfm, kmeans_base)
    with timer.step("silhouette", "Measuring cluster separation (silhouette on a sample)"):
        sil = silhouette(model, X, labels)
    segments = []
    for c in named:
        row = summary.loc[c.cluster] if c.cluster in summary.index else None
        play = book.play(c.base)
        segments.append(
            {
                "cluster": c.cluster,
                "name": c.name,
                "base": c.base,
                "scores": dict(zip("rfm", c.scores)),
                "centroid": dict(zip(("recency", "frequency", "monetary"), map(float, model.centroids_[c.cluster]))),
                "customers": int(row["customers"]) if row is not None else 0,
                "share": float(row["share"]) if row is not None else 0.0,
                "recency_median": float(row["recency_median"]) if row is not None else None,
                "frequency_mean": float(row["frequency_mean"]) if row is not None else None,
                "monetary_median": float(row["monetary_median"]) if row is not None else None,
                "description": play.description,
                "actions": list(play.actions),
            }
        )
    segments.sort(key=lambda s: (vocabulary_rank(s["base"]), -(s["monetary_median"] or 0)))
    metadata = {
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "trained_by": trained_by,
        "source": table.source,
        "data": data_ref,
        "orders": table.orders,
        "customers": table.customers,
        "one_time_share": float((rfm["frequency"] == 1).mean()),
        "excluded": table.excluded,
        "snapshot_date": table.snapshot_date.isoformat(),
        "latest_purchase": table.latest_purchase.isoformat(),
        "k": k,
        "ranges": {c: [float(rfm[c].min()), float(rfm[c].max())] for c in ("recency", "frequency", "monetary")},
        "silhouette": sil,
        "silhouette_sample": int(min(5_000, len(X))),
        "library_versions": _library_versions(),
        "schema_version": SCHEMA_VERSION,
    }
    bundle = {
        "model": model,
        "segments": segments,
        "rule_based": rule_based,
        "metadata": metadata,
    }
    assignments = rfm.assign(cluster=labels)
    del model.labels_  # not needed to predict; keeps the bundle small
    return bundle, assignments


def train(
    source: Source,
    store: ModelStore,
    *,
    k: int = DEFAULT_K,
    as_of: dt.date | None = None,
    trained_by: str = "cli",
    data_ref: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train on ``source`` and save a new current version. Returns the saved bundle."""
    timer = Timer(progress)
    with timer.step("read_rfm", f"Reading {source.describe()} and computing RFM"):
        table = load_rfm(source, as_of=as_of)
    bundle, assignments = fit_bundle(table, k=k, trained_by=trained_by, data_ref=data_ref, timer=timer)
    with timer.step("save", "Saving the model"):
        bundle["metadata"]["timings"] = dict(timer.timings)
        version = store.save(bundle, assignments)
    bundle["metadata"]["timings"] = dict(timer.timings)
    bundle["version"] = version
    return bundle
