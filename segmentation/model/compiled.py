"""The served model as SQL, so every customer is scored where the data lives.

``log1p``, standardisation and the nearest of the centres of the customer's own stratum (recency
band and kind) are a few arithmetic expressions, and the at-risk rule a few comparisons. The
query below adds ``at_risk`` (0/1) and ``cluster`` to a relation ``customers`` (customer_id,
recency, frequency, monetary, occasions, gap, last_day) and gives the same answers as
``SegmentModel.predict``, ``ChanceModel.now`` and ``AtRiskRule.flags``: same cut-offs, first
minimum on ties, the chance evaluated term by term in the same order.
Written in the product's one dialect and compiled per engine like the RFM (``dialects``).
"""

from __future__ import annotations

import numpy as np

from segmentation.model.atrisk import AtRiskRule
from segmentation.model.chance import ChanceModel
from segmentation.model.estimator import AT_RISK, N_BANDS, N_KINDS, REPEAT, SegmentModel
from segmentation.model.terms import ShopTerms


def _num(x: float) -> str:
    """A double literal every engine reads exactly (17 significant digits, exponent form)."""
    return f"{float(x):.17e}"


def at_risk_sql(rule: AtRiskRule, terms: ShopTerms) -> str:
    """``AtRiskRule.flags`` over columns recency, occasions, monetary, chance and chance_then."""
    worth = []
    if rule.repeat_buyers:
        worth.append("occasions >= 2")
    threshold = rule.spend_threshold(terms)
    if threshold is not None:
        worth.append(f"monetary >= {_num(threshold)}")
    if not worth:
        return "0"
    cond = [
        f"({' OR '.join(worth)})",
        f"recency > {_num(terms.return_time)}",
        f"recency <= CASE WHEN occasions >= 2 THEN {_num(terms.repeat_lost)} ELSE {_num(terms.return_window)} END",
        f"chance * (1 - chance_then) <= {_num(rule.fall)} * chance_then * (1 - chance)",
    ]
    if rule.floor is not None:
        repeat = rule.floor if rule.floor_repeat is None else rule.floor_repeat
        cond.append(f"chance >= CASE WHEN occasions >= 2 THEN {_num(repeat)} ELSE {_num(rule.floor)} END")
    if rule.ceiling is not None:
        cond.append(f"chance < {_num(rule.ceiling)}")
    return f"CASE WHEN {' AND '.join(cond)} THEN 1 ELSE 0 END"


def chance_ctes(chance: ChanceModel | None) -> list[tuple[str, str]]:
    """``chanced``: ``customers`` with each one's chance to buy again now and on the day of
    their last order (NULL without a chance model), computed once (fenced on PostgreSQL)."""
    if chance is None:
        cols = "CAST(NULL AS DOUBLE) AS chance, CAST(NULL AS DOUBLE) AS chance_then"
    else:
        cols = f"{chance.sql()} AS chance, {chance.sql_right_after()} AS chance_then"
    return [("chanced", f"SELECT *, {cols} FROM customers OFFSET 0")]


def _nearest(model: SegmentModel, own: np.ndarray) -> str:
    """The first of ``own`` clusters nearest to (z0, z1, z2)."""
    if len(own) == 1:
        return str(int(own[0]))
    c = model.cluster_centers_
    d = {int(k): " + ".join(f"(z{j} - {_num(c[k, j])}) * (z{j} - {_num(c[k, j])})" for j in range(3)) for k in own}
    whens = []
    for i, k in enumerate(own[:-1]):
        rest = own[i + 1 :]
        cond = " AND ".join(f"({d[int(k)]}) <= ({d[int(r)]})" for r in rest)
        whens.append(f"WHEN {cond} THEN {int(k)}")
    return f"CASE {' '.join(whens)} ELSE {int(own[-1])} END"


def scored_ctes(
    model: SegmentModel, rule: AtRiskRule, terms: ShopTerms, chance: ChanceModel | None
) -> list[tuple[str, str]]:
    """CTEs after ``customers``: ``chanced`` (the chance to buy again), ``placed`` (at_risk,
    band, kind and the standardised features, each computed once per customer) and ``scored``
    (with cluster and chance).

    ``OFFSET 0`` fences ``placed``: PostgreSQL would otherwise inline its expressions into every
    reference, computing the logarithms and the churn rule dozens of times per customer in the
    nearest-centre comparisons (``dialects`` drops it for the engines that need no fence)."""
    mean, scale = model.scaler_.mean_, model.scaler_.scale_
    cut = [_num(x) for x in model.cutoffs]
    lost = f"CASE WHEN occasions >= 2 THEN {_num(model.lost_cutoff([2])[0])} ELSE {_num(model.lost_cutoff([1])[0])} END"
    band = (
        f"CASE WHEN recency > {lost} THEN 3 WHEN recency <= {cut[0]} THEN 0 WHEN recency <= {cut[1]} THEN 1 ELSE 2 END"
    )
    risk = at_risk_sql(rule, terms)
    kind = f"CASE WHEN {risk} = 1 THEN {AT_RISK} WHEN occasions >= 2 THEN {REPEAT} ELSE 0 END"
    features = ("recency", "occasions", "monetary")
    z = ", ".join(
        f"(LN(1 + CAST({f} AS DOUBLE)) - {_num(mean[j])}) / {_num(scale[j])} AS z{j}" for j, f in enumerate(features)
    )
    own = [np.flatnonzero(model.center_stratum_ == s) for s in range(len(model.strata_))]
    strata = " ".join(
        f"WHEN band = {b} AND kind = {k} THEN {_nearest(model, own[int(model.lookup_[b, k])])}"
        for b in range(N_BANDS)
        for k in range(N_KINDS)
    )
    return [
        *chance_ctes(chance),
        ("placed", f"SELECT *, {risk} AS at_risk, {band} AS band, {kind} AS kind, {z} FROM chanced OFFSET 0"),
        (
            "scored",
            "SELECT customer_id, recency, frequency, monetary, occasions, gap, last_day, at_risk, chance, "
            f"CASE {strata} END AS cluster FROM placed",
        ),
    ]
