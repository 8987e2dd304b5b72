"""Answers as terminal text: tables and short blocks for the ``segment`` command."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .atrisk import AtRiskSummary
from .segments import RuleBasedComparison, Segment
from .service import Prediction
from .terms import ShopTerms

if TYPE_CHECKING:
    from .validate import Report


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


def share(x: float) -> str:
    """A share as a percentage; a tiny one is never shown as 0.0%."""
    return "<0.1%" if 0 < x < 0.0005 else f"{x:.1%}"


def terms_block(terms: ShopTerms) -> str:
    return "The shop's terms\n" + "\n".join(f"  {line}" for line in terms.lines())


def segments_table(segments: Sequence[Segment], terms: ShopTerms) -> str:
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
        ]
        for s in segments
    ]
    return table(
        ("Segment", "Customers", "Share", "Revenue", "Days since last order", "Orders", "Spend", "At risk", "Fit"),
        rows,
        "lrrrrrrrr",
    ) + (
        "\n(medians per segment; Revenue: share of all spend; Fit: share of the segment's customers "
        "meeting its definition, at least half for the name to hold)"
    )


def at_risk_block(a: AtRiskSummary, terms: ShopTerms) -> str:
    lines = [
        f"At risk: {a.customers:,} customers ({share(a.share_of_customers)} of {a.all_customers:,}), "
        f"revenue {terms.money(a.revenue)} ({share(a.share_of_revenue)} of all spend)",
        f"  Who counts: {a.definition}.",
    ]
    if a.by_segment:
        lines.append("  By segment: " + " · ".join(f"{s.name} {s.customers:,}" for s in a.by_segment))
    return "\n".join(lines)


def at_risk_table(a: AtRiskSummary, terms: ShopTerms) -> str:
    head = (
        f"Churn risk in model {a.model_version}, as of {a.as_of}: {a.customers:,} customers "
        f"({share(a.share_of_customers)} of {a.all_customers:,}), revenue {terms.money(a.revenue)} "
        f"({share(a.share_of_revenue)} of all spend)"
    )
    body = f"Who counts: {a.definition}."
    if not a.by_segment:
        return f"{head}\n{body}"
    rows = [[s.name, f"{s.customers:,}", terms.money(s.revenue)] for s in a.by_segment]
    return f"{head}\n{body}\n\n" + table(("Segment", "At risk", "Their revenue"), rows, "lrr")


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
            f"  The segment ({ans.segment_customers:,} customers, {ans.fit:.0%} of them fit its definition): "
            f"{ans.typical}."
            if ans.segment_customers
            else f"  The segment: {ans.typical}."
        ),
        f"  Its definition: {ans.definition}.",
    ]
    if ans.outside:
        lines.append(f"  {ans.outside}")
    if ans.persona:
        lines.append(f"  Its persona: {ans.persona}.")
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


def validation(r: Report) -> str:
    from .validate import MAX_AT_RISK_CHANGE, MAX_SEED_CHANGE

    t = r.trained
    ok = lambda b: "pass" if b else "FAIL"  # noqa: E731
    out = [
        f"Validation of {r.source}: {r.customers:,} customers, K = {t.info.k}, seed {t.info.seed}",
        "",
        terms_block(t.terms),
        "",
        "Definitions (a name holds when at least half of its customers fit it)",
    ]
    rows = [
        [
            s.name,
            ok(s.passed),
            f"{s.fit:.0%}",
            f"{s.customers:,}",
            f"{s.share:.1%}",
            f"{s.revenue_share:.1%}",
            f"{s.at_risk:,}",
            s.typical,
        ]
        for s in r.segments
    ]
    out.append(
        table(
            ("Segment", "Check", "Fit", "Customers", "Share", "Revenue", "At risk", "Typical customer"),
            rows,
            "llrrrrrl",
        )
    )
    out.append("")
    for s in r.segments:
        out.append(f"  {s.name}: {s.definition}")
    out += ["", at_risk_block(r.at_risk, t.terms), ""]
    seeds = r.seed_runs()
    out.append(
        f"Stability across seeds {', '.join(str(x.seed) for x in seeds)} (K = {t.info.k}): "
        f"same names: {ok(r.seed_names_same)}; customers changing base name: at most "
        f"{r.seed_max_change:.2%} (limit {MAX_SEED_CHANGE:.0%}) {ok(r.seed_max_change <= MAX_SEED_CHANGE)}"
    )
    for x in seeds:
        out.append(f"  seed {x.seed}: {len(x.names)} names, {x.changed:.2%} changed, {x.at_risk:,} at risk")
    ks = r.k_runs()
    out.append(
        f"At-risk count across K = {min(x.k for x in ks)}..{max(x.k for x in ks)} and seeds: "
        f"largest change {r.at_risk_max_change:.2%} (limit {MAX_AT_RISK_CHANGE:.0%}) "
        f"{ok(r.at_risk_max_change <= MAX_AT_RISK_CHANGE)}"
    )
    out.append("  " + " · ".join(f"K={x.k}: {x.at_risk:,}" for x in sorted(ks, key=lambda x: x.k)))
    inv = r.invariants
    out.append(f"No promotion without a purchase ({inv.days} days later, no new orders): {ok(inv.hold)}")
    out.append(
        f"  scored by the same model: {inv.scored_promoted:,} moved to a more active segment, "
        f"{inv.scored_risk_to_active:,} from at risk to an active segment"
    )
    out.append(
        f"  retrained on the later snapshot: {inv.retrained_promoted:,} moved to a more active segment, "
        f"{inv.retrained_risk_to_active:,} from at risk to an active segment"
    )
    p = r.palive
    if p.usable:
        out.append(
            f"BG/NBD P(alive), an extra signal for repeat buyers: {p.likely_gone:,} of {p.repeat_buyers:,} "
            f"repeat buyers are probably gone (P(alive) < 0.5): {p.also_at_risk:,} also at risk by the rule, "
            f"{p.lost_by_terms:,} already past the lost cut-off, {p.adds:,} more that the rule does not "
            f"flag yet; {p.rule_alive:,} flagged by the rule look alive to BG/NBD."
        )
    else:
        out.append(f"BG/NBD P(alive) not used: {p.reason}.")
    out.append("")
    out.append(f"Overall: {ok(r.passed)}")
    return "\n".join(out)
