"""What segment validate and segment backtest print."""

from __future__ import annotations

from segment_cli.text import at_risk_block, share, table, terms_block
from segmentation.analysis.backtest import SCORES, Backtest, CutoffResult
from segmentation.analysis.validate import MAX_AT_RISK_CHANGE, MAX_SEED_CHANGE, MIN_COMPARED, Report
from segmentation.serving.answers import share_text


def validation(r: Report) -> str:
    t = r.trained
    ok = lambda b: "pass" if b else "FAIL"  # noqa: E731
    out = [
        f"Validation of {r.source}: {r.customers:,} customers, K = {t.info.k}, seed {t.info.seed}",
        "",
        terms_block(t.terms),
        "",
        "Definitions (a name holds when at least two thirds of its customers fit it)",
    ]
    rows = [
        [
            s.name,
            ok(s.passed),
            f"{s.fit:.0%}",
            f"{s.customers:,}",
            f"{share_text(s.share)}",
            f"{share_text(s.revenue_share)}",
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
    if r.futures:
        fut = t.futures
        out.append("")
        out.append(
            f"Names on the future (what the customers of {len(fut.cutoffs)} earlier dates, {min(fut.cutoffs)} to "
            f"{max(fut.cutoffs)}, did in the next {fut.horizon:,} days; segments and tiers of {MIN_COMPARED}+ customers):"
            if fut is not None and fut.cutoffs
            else "Names on the future:"
        )
        for c in r.futures:
            out.append(f"  {claim_line(c)}")
    out.append("")
    out.append(f"Overall: {ok(r.passed)}")
    return "\n".join(out)


def _interval(f) -> str:
    lo, hi = f.interval
    return f"{share(f.rate)} ({share(lo)}–{share(hi)})"


def claim_line(c) -> str:
    """One claim a name makes, its verdict, the numbers, and whether the intervals settle it."""
    verdict = "n/a " if c.passed is None else ("pass" if c.passed else "FAIL")
    close = " (the 95% intervals overlap: within chance)" if c.passed is not None and c.clear is False else ""
    return f"{verdict} {c.claim}: {c.detail}{close}"


def backtest(bt: Backtest, currency: str = "") -> str:
    money = lambda x: f"{currency}{x:,.2f}"  # noqa: E731
    horizon = "its horizon" if bt.horizon is None else f"the {bt.horizon:,} days"
    out = [
        f"Backtest of {bt.source}: {len(bt.results)} cut-off{'s' if len(bt.results) != 1 else ''}; horizon: "
        f"{bt.horizon_reason}",
        "Each model is trained as of its cut-off (that day's orders included, nothing later) as `segment train "
        f"--as-of` would, then compared with {horizon} after it, which it never saw.",
    ]
    for line in bt.skipped:
        out.append(f"  skipped {line}")
    for r in bt.results:
        out += ["", *_cutoff_lines(r, money, SCORES)]
    if len(bt.results) > 1:
        out += ["", "Mean AUC over the cut-offs:"]
        for key, label in SCORES.items():
            v = bt.mean_auc().get(key)
            out.append(f"  {label:<56} {'-' if v is None else f'{v:.3f}'}")
    checked = sum(1 for r in bt.results for c in r.claims if c.passed is not None)
    failed, unsettled = bt.failed, bt.unsettled
    out += [
        "",
        f"The names' claims: {checked} checked, {len(failed)} contradicted beyond chance" + (":" if failed else "."),
    ]
    out += [f"  {cutoff}: {c.claim}" for cutoff, c in failed]
    if unsettled:
        out.append(f"{len(unsettled)} went the wrong way within chance (their 95% intervals overlap):")
        out += [f"  {cutoff}: {c.claim}" for cutoff, c in unsettled]
    return "\n".join(out)


def _cutoff_lines(r: CutoffResult, money, scores: dict[str, str]) -> list[str]:
    t = r.terms
    out = [
        f"Cut-off {r.cutoff}: {r.customers:,} customers, {r.returned:,} ({share(r.base_rate)}) bought again within "
        f"{r.horizon:,} days ({r.seconds:.1f} s)",
        f"  The model as of then: return time {t[0]}, return window {t[1]}, lost after {t[2]} days; "
        f"{len(r.segments)} segments: {r.rule_cells} a whole recency band and kind (a rule cell), "
        f"{r.kmeans_segments} from KMeans splits.",
        "",
    ]
    rows = [
        [
            s.name,
            f"{s.customers:,}",
            _interval(s.future) if s.customers else "-",
            money(s.future.spend_per_customer) if s.customers else "-",
            "-" if s.claimed is None else f"{share(s.claimed.rate)} of {s.claimed.customers:,}",
        ]
        for s in r.segments
    ]
    out += [
        "  " + line
        for line in table(
            ("Segment", "Customers", "Bought again (95%)", "Revenue per customer", "Claimed at training"),
            rows,
            "lrrrr",
        ).splitlines()
    ]
    tiers = r.tiers
    flagged = (
        f"  At risk: {r.flagged.customers:,} customers, {_interval(r.flagged)} bought again; everyone else "
        f"{share(r.not_flagged.rate)}."
        if r.flagged.customers
        else "  At risk: nobody was flagged (no customer worth keeping met the rule's bounds at this cut-off)."
    )
    out += [
        "",
        flagged,
        "  Tiers (the at-risk customers taken out of their band): "
        + " · ".join(f"{name} {_interval(f)}" for name, f in tiers.items()),
        "",
        "  Who buys again, ranked by each score (AUC; the chance's lead over each, with its 95% interval):",
    ]
    for key, label in scores.items():
        v = r.auc.get(key)
        lead = r.chance_vs.get(key)
        extra = "" if lead is None else f"   chance {lead[0]:+.3f} ({lead[1]:+.3f} to {lead[2]:+.3f})"
        out.append(f"    {label:<54} {'-' if v is None else f'{v:.3f}'}{extra}")
    c = r.calibration
    if c is not None:
        deciles = ", ".join(f"{share(d.predicted)}→{share(d.observed)}" for d in c.deciles)
        bg = "" if c.brier_bgnbd is None else f", BG/NBD's probability {c.brier_bgnbd:.5f}"
        out += [
            f"  Calibration of the chance, deciles predicted→observed: {deciles}",
            f"  Expected calibration error {c.ece * 100:.2f} points (mean predicted {share(c.mean_predicted)}, "
            f"observed {share(c.observed)}); Brier score {c.brier:.5f} against {c.brier_base_rate:.5f} for the "
            f"base rate{bg}.",
        ]
    if r.claims:
        out.append("  The names' claims on this future (segments and tiers of 200+ customers):")
        for claim in r.claims:
            out.append(f"    {claim_line(claim)}")
    return out
