"""The trained clusters described: each segment's typical numbers, name, definition check and actions; the quantile rules compared."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segmentation.model.baseline import GRID_NAMES, rule_based_cells
from segmentation.model.definitions import BY_NAME, check, name_for, name_for_profile, vocabulary_rank
from segmentation.model.estimator import AT_RISK, ONE_TIME
from segmentation.model.naming import Candidate, qualify
from segmentation.model.segments import (
    RuleBasedComparison,
    RuleBasedRow,
    Segment,
)
from segmentation.model.terms import Band, Freq, Spend


def rule_based_comparison(rfm: pd.DataFrame, champions: np.ndarray) -> RuleBasedComparison:
    """The quantile grid's segment sizes, and its Champions against the clusters' (``champions``:
    who the model calls Champions)."""
    cells = rule_based_cells(rfm)
    one_time = rfm["frequency"].to_numpy() == 1
    per_cell = np.bincount(cells, minlength=len(GRID_NAMES))
    one_time_per_cell = np.bincount(cells[one_time], minlength=len(GRID_NAMES))
    counts: dict[str, int] = {}
    one_time_counts: dict[str, int] = {}
    for name, n, n1 in zip(GRID_NAMES, per_cell, one_time_per_cell):
        counts[name] = counts.get(name, 0) + int(n)
        one_time_counts[name] = one_time_counts.get(name, 0) + int(n1)
    rows = tuple(
        RuleBasedRow(n, counts[n], one_time_counts[n])
        for n in sorted((n for n in counts if counts[n]), key=vocabulary_rank)
    )
    return RuleBasedComparison(
        rows,
        {
            "rule_based": counts.get("Champions", 0),
            "rule_based_one_time_buyers": one_time_counts.get("Champions", 0),
            "kmeans": int(champions.sum()),
            "kmeans_one_time_buyers": int((champions & one_time).sum()),
        },
    )


def _segments(model, rfm, labels, band, freq, spend, flags, terms, book) -> list[Segment]:
    """Every cluster named, with its check and typical numbers; reserved clusters (no customers
    at training) are named from the typical profile of their band and kind."""
    k = len(model.cluster_centers_)
    recency = rfm["recency"].to_numpy()
    frequency = rfm["frequency"].to_numpy()
    occasions = rfm["occasions"].to_numpy()
    monetary = rfm["monetary"].to_numpy(np.float64)
    order = np.argsort(labels, kind="stable")  # labels are int16: a radix sort
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=k))])
    total_revenue = float(monetary.sum())
    cands, stats = [], {}
    for c in range(k):
        idx = order[bounds[c] : bounds[c + 1]]
        if c in model.reserved_:
            b, kind = model.strata_[model.center_stratum_[c]][0], model.strata_[model.center_stratum_[c]][1][0]
            f = Freq.ONE_TIME if kind == ONE_TIME else Freq.REPEAT
            base = name_for_profile(Band(b), f, Spend.LOW, kind == AT_RISK)
            r, o, m = model.centroids_[c]
            med = (float(round(r)), float(round(o)), float(m))
            cands.append(
                Candidate(
                    cluster=c,
                    base=base,
                    band=Band(b),
                    freq=f,
                    spend=Spend.LOW,
                    medians=med,
                    center=tuple(model.transform(np.array([med]))[0]),
                )
            )
            stats[c] = (idx, check(base, band[idx], freq[idx], spend[idx], flags[idx]))
            continue
        b, f, s, r = band[idx], freq[idx], spend[idx], flags[idx]
        base = name_for(b, f, s, r)
        med = (float(np.median(recency[idx])), float(np.median(occasions[idx])), float(np.median(monetary[idx])))
        typical_spend, typical_freq = terms.spend(med[2]), terms.freq(med[1])
        one_time = (f == Freq.ONE_TIME).mean()
        cands.append(
            Candidate(
                cluster=c,
                base=base,
                band=Band(int(np.bincount(b, minlength=4).argmax())),
                freq=typical_freq,
                spend=typical_spend,
                medians=med,
                center=tuple(model.transform(np.array([med]))[0]),
                spend_share=float((s == typical_spend).mean()),
                kind_share=float(one_time if typical_freq == Freq.ONE_TIME else 1.0 - one_time),
            )
        )
        stats[c] = (idx, check(base, b, f, s, r))
    display = qualify(cands, terms)
    segments = []
    for cand in cands:
        idx, _ = stats[cand.cluster]
        name, scope = display[cand.cluster]
        definition = BY_NAME[cand.base].narrowed(scope)
        chk = check(cand.base, band[idx], freq[idx], spend[idx], flags[idx], definition)
        play = book.play(cand.base)
        revenue = float(monetary[idx].sum())
        reserved = cand.cluster in model.reserved_
        segments.append(
            Segment(
                cluster=cand.cluster,
                name=name,
                base=cand.base,
                band=cand.band,
                definition=definition.text(terms),
                scope=scope,
                check=chk,
                customers=len(idx),
                share=len(idx) / len(labels),
                revenue=revenue,
                revenue_share=revenue / total_revenue if total_revenue else 0.0,
                recency_median=cand.medians[0],
                frequency_median=cand.medians[1] if reserved else float(np.median(frequency[idx])),
                frequency_mean=cand.medians[1] if reserved else float(frequency[idx].mean()),
                occasions_median=cand.medians[1],
                monetary_median=cand.medians[2],
                at_risk=int(flags[idx].sum()),
                centroid=_triple(model.centroids_[cand.cluster]),
                description=play.description,
                actions=play.actions,
                reserved=reserved,
            )
        )
    segments.sort(key=lambda s: (vocabulary_rank(s.base), s.band, -s.monetary_median, s.cluster))
    return segments


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)
