"""Answers as terminal text: tables and short blocks for the ``segment`` command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segmentation.model.atrisk import STAKE_NOTE, AtRiskSummary
from segmentation.model.outlook import TierFutures
from segmentation.model.segments import RuleBasedComparison, Segment
from segmentation.model.terms import ShopTerms
from segmentation.serving.answers import Prediction, share_text

if TYPE_CHECKING:
    pass


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str) -> str:
    colalign = tuple("left" if a == "l" else "right" for a in align)
    from tabulate import tabulate  # a table is only drawn by some commands: not on every cold start

    return tabulate(
        [[str(c) for c in r] for r in rows],
        headers=list(headers),
        tablefmt="simple",
        colalign=colalign,
        disable_numparse=True,
    )


share = share_text  # the one format, shared with the bot and the report


def terms_block(terms: ShopTerms) -> str:
    return "The shop's terms\n" + "\n".join(f"  {line}" for line in terms.lines())


def segments_table(segments: Sequence[Segment], terms: ShopTerms, futures: TierFutures | None = None) -> str:
    future = futures is not None and any(s.future is not None for s in segments)
    rows = [
        [
            s.name,
            f"{s.customers:,}",
            share(s.share),
            share(s.revenue_share),
            f"{s.recency_median:,.0f}",
            f"{s.frequency_median:g}",
            terms.money(s.monetary_median),
            f"{s.at_risk:,}",
            f"{s.check.fit:.0%}" + ("" if s.check.passed else " FAIL"),
            *([_future_cell(s)] if future else []),
        ]
        for s in segments
    ]
    headers = ["Segment", "Customers", "Share", "Revenue", "Days since last order", "Orders", "Spend", "At risk", "Fit"]
    if future:
        headers.append("Bought again")
    note = (
        "\n(medians per segment; Revenue: share of all spend; Fit: share of the segment's customers "
        "meeting its definition, at least two thirds for the name to hold"
    )
    if future and futures is not None:
        c = futures.cutoffs
        when = c[0].isoformat() if len(c) == 1 else f"{len(c)} earlier dates ({min(c)} to {max(c)})"
        note += (
            f"; Bought again: of the customers who were like the segment at {when}, the share who bought "
            f"again within {futures.horizon:,} days, with its 95% interval"
        )
    return table(headers, rows, "lrrrrrrrr" + ("r" if future else "")) + note + ")"


def _future_cell(s: Segment) -> str:
    f = s.future
    if f is None or not f.customers:
        return "-"
    lo, hi = f.interval
    return f"{share(f.rate)} ({share(lo)}–{share(hi)})"


def stake(a: AtRiskSummary, terms: ShopTerms) -> str:
    return f"revenue at stake {a.stake(terms.money)}"


def at_risk_block(a: AtRiskSummary, terms: ShopTerms) -> str:
    lines = [
        f"At risk: {a.customers:,} customers ({share(a.share_of_customers)} of {a.all_customers:,}), "
        f"{stake(a, terms)}; they have spent {terms.money(a.past_spend)} so far",
        f"  Who counts: {a.definition}.",
        f"  ({STAKE_NOTE}.)",
    ]
    if a.by_segment:
        lines.append("  By segment: " + " · ".join(f"{s.name} {s.customers:,}" for s in a.by_segment))
    return "\n".join(lines)


def at_risk_table(a: AtRiskSummary, terms: ShopTerms) -> str:
    head = (
        f"Churn risk in model {a.model_version}, as of {a.as_of}: {a.customers:,} customers "
        f"({share(a.share_of_customers)} of {a.all_customers:,}), {stake(a, terms)}"
    )
    body = f"Who counts: {a.definition}.\n({STAKE_NOTE}.)"
    if not a.by_segment:
        return f"{head}\n{body}"
    rows = [[s.name, f"{s.customers:,}", terms.money(s.revenue)] for s in a.by_segment]
    return f"{head}\n{body}\n\n" + table(("Segment", "At risk", "Revenue at stake"), rows, "lrr")


def personas_block(segments: Sequence[Segment]) -> str:
    """What each segment buys, how it pays and where it orders from; empty when the data does not say."""
    lines = [f"  {s.name}: {s.persona.line()}" for s in segments if s.persona is not None]
    if not lines:
        return ""
    return (
        "Personas (categories by share of the segment's item revenue, payment by share of its payment "
        "value, states by share of its customers):\n" + "\n".join(lines)
    )


def answer(ans: Prediction, terms: ShopTerms) -> str:
    risk = "at risk of churning" if ans.at_risk else "not at risk"
    lines = [
        f"{ans.segment}: {ans.description}",
        f"  This customer: {ans.recency:,.0f} days since the last order ({ans.levels[0]}), "
        f"{ans.frequency:,.0f} order{'s' if ans.frequency != 1 else ''} ({ans.levels[1]}), "
        f"spend {terms.money(ans.monetary)} ({ans.levels[2]}); {risk}.",
        (
            f"  {ans.segment_label.rstrip(',')} ({ans.segment_customers:,} customers, {ans.fit:.0%} of them fit "
            f"its definition): {ans.typical}."
            if ans.segment_customers
            else f"  {ans.segment_label.rstrip(',')}: {ans.typical}."
        ),
        f"  {'Definition of ' + ans.segment if ans.own_name else 'Its definition'}: {ans.definition}.",
    ]
    whose = "the nearest segment" if ans.own_name else "the segment"
    if ans.outside:
        lines.append(f"  {ans.outside}")
    if ans.chance_text:
        lines.append(f"  {ans.chance_text}")
    if ans.future:
        lines.append(f"  What {whose} did next: {ans.future}.")
    if ans.persona:
        lines.append(f"  Persona of {whose}: {ans.persona}." if ans.own_name else f"  Its persona: {ans.persona}.")
    if ans.note:
        lines.append(f"  Note: {ans.note}")
    lines.append("  Recommended actions:")
    lines += [f"  - {a}" for a in ans.actions]
    return "\n".join(lines)


def rule_based_block(rb: RuleBasedComparison) -> str:
    ch = rb.champions
    return (
        "Rule-based quantile segments, for comparison:\n"
        + table(
            ("Segment", "Customers", "of them one-time buyers"),
            [[s.name, f"{s.customers:,}", f"{s.one_time_buyers:,}"] for s in rb.segments],
            "lrr",
        )
        + f"\n\nChampions: the quantile rules find {ch['rule_based']:,} ({ch['rule_based_one_time_buyers']:,} "
        f"of them one-time buyers); the segments here find {ch['kmeans']:,} "
        f"({ch['kmeans_one_time_buyers']:,} one-time)."
    )
