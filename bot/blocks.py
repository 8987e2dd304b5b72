"""Block Kit messages. Pure functions: data in, ``{"text", "blocks"}`` out."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from segmentation.model.atrisk import STAKE_NOTE, AtRiskSummary
from segmentation.model.segments import TrainedModel, plural
from segmentation.model.terms import ShopTerms
from segmentation.serving.answers import CustomerAnswer, Prediction, percent, share_text
from segmentation.serving.served import ServedModel

from .mrkdwn import as_text, user, without_addresses

Message = dict[str, Any]

HELP_EXAMPLES = [
    ("/segment 30 2 150", "segment of a customer who last bought 30 days ago, 2 orders, 150 spent"),
    (
        "/segment r=30 f=2 m=150",
        "the same, by name; also `30d 2 $150`, a decimal comma `30 2 150,50` and thousands `30 2 1,250`",
    ),
    ("/segment customer <id>", "one customer's R, F, M, segment and actions"),
    ("/segment segments", "every segment with size, share and actions"),
    ("/segment at-risk", "customers and revenue at risk of churning, with an export button"),
    ("/segment export {segment}", "a CSV of a segment's customers, sent to you"),
    ("/segment model", "the model being served"),
    (
        "/segment digest subscribe daily 09:00",
        "a digest of segments and churn risk in this channel; also `list`, `unsubscribe`, `now`",
    ),
    ("/segment retrain", "retrain on the latest data with the served model's K (admins; `k=12` to change it)"),
    ("/segment rollback", "serve the previous model (admins)"),
    ("/segment serve v0003", "serve a kept model version by name, e.g. forward again after a rollback (admins)"),
]


MAX_BLOCKS = 50  # Slack's limit for a message
MAX_TEXT = 3000  # a section's or context element's text


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut at a word with "…" when it is longer."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:.-") + "…"


_PATH = re.compile(r"(?<![\w:/.<])(?:~|\.{1,2})?(?:/[^\s/'\"`<>|]+){2,}")


def hide_paths(text: str) -> str:
    """Server file paths cut to their last part and database URLs named by their kind: nothing
    the bot posts shows where things live (every section, context, header and fallback text goes
    through here)."""
    text = without_addresses(text)
    if "/" not in text:
        return text
    return _PATH.sub(
        lambda m: m.group().rstrip(".,;:)").rsplit("/", 1)[-1] + m.group()[len(m.group().rstrip(".,;:)")) :], text
    )


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(hide_paths(text), MAX_TEXT)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": cut(hide_paths(text), MAX_TEXT)}]}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": cut(hide_paths(text), 150), "emoji": True}}


def button(text: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id}
    if value:
        b["value"] = value[:2000]
    if style:
        b["style"] = style
    return b


def money(x: float, currency: str = "") -> str:
    return f"{currency}{x:,.2f}"


def _actions_text(actions: Sequence[str]) -> str:
    return "*Recommended actions*\n" + "\n".join(f"• {a}" for a in actions)


def _rfm_fields(p: Prediction) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": f"*Recency*\n{p.recency:,.0f} days · {p.levels[0]}"},
            {
                "type": "mrkdwn",
                "text": f"*Frequency*\n{p.frequency:,.0f} order{'' if p.frequency == 1 else 's'} · {p.levels[1]}",
            },
            {"type": "mrkdwn", "text": f"*Monetary*\n{money(p.monetary, p.currency)} · {p.levels[2]}"},
            {"type": "mrkdwn", "text": f"*Churn risk*\n{'at risk' if p.at_risk else 'not at risk'}"},
            *(
                [{"type": "mrkdwn", "text": f"*Chance to buy again*\n{_chance(p)}"}]
                if p.chance is not None and p.horizon is not None
                else []
            ),
        ],
    }


def _chance(p: Prediction) -> str:
    basis = f"\n_{p.chance_basis}_" if p.chance_basis else ""
    return f"{percent(p.chance or 0.0)} in the next {p.horizon:,} days{basis}"


def _segment_numbers(p: Prediction) -> dict[str, Any]:
    counted = (
        f" ({p.segment_customers:,} customers, {p.fit:.0%} of them fit its definition)" if p.segment_customers else ""
    )
    persona = f"\n_Persona:_ {as_text(p.persona)}." if p.persona else ""
    outside = f" {p.outside}" if p.outside else ""
    future = f"\n_What it did next:_ {p.future}." if p.future else ""
    label = f"The nearest segment, {p.numbers_of}" if p.own_name else "The segment"
    defined = f"Definition of {p.segment}" if p.own_name else "Definition"
    return section(f"*{label}*{counted}: {p.typical}.\n_{defined}:_ {p.definition}.{outside}{future}{persona}")


def prediction(p: Prediction, shareable: bool = True, asked_by: str | None = None) -> Message:
    """The answer to a typed profile. The share button carries the profile and the model version
    it was answered with, so sharing posts this same answer, not a re-answer by a newer model."""
    blocks = [
        header(p.segment),
        section(p.description),
        _rfm_fields(p),
        _segment_numbers(p),
        section(_actions_text(p.actions)),
        context(f"Model {p.model_version}" + (f" · asked by {user(asked_by)}" if asked_by else "")),
    ]
    if p.note:
        blocks.insert(5, context(f":information_source: {p.note}"))
    if shareable:
        value = json.dumps({"r": p.recency, "f": p.frequency, "m": p.monetary, "v": p.model_version})
        blocks.append({"type": "actions", "elements": [button("Share in channel", "share_prediction", value)]})
    text = (
        f"{p.segment}: {p.description} (R {p.recency:,.0f} days, F {p.frequency:,.0f}, "
        f"M {money(p.monetary, p.currency)}; the segment is {p.typical})"
    )
    return {"text": text, "blocks": blocks}


def customer(a: CustomerAnswer) -> Message:
    gap = "" if a.usual_gap is None else f", usually {plural(round(a.usual_gap), 'day')} apart"
    blocks = [
        header(f"{a.segment}"),
        section(
            f"Customer `{as_text(a.customer_id)}`: {a.purchase_days} purchase day{'s' if a.purchase_days != 1 else ''}"
            f"{gap}\n{a.description}"
        ),
        _rfm_fields(a),
        _segment_numbers(a),
        section(_actions_text(a.actions)),
        context(f"Model {a.model_version} · values as of its snapshot date"),
    ]
    return {
        "text": f"Customer {as_text(a.customer_id)}: {a.segment} ({'at risk' if a.at_risk else 'not at risk'})"
        + (f"; {a.chance_text}" if a.chance_text else ""),
        "blocks": blocks,
    }


def segments(served: ServedModel) -> Message:
    info, terms = served.info, served.terms
    segs = served.segments()
    blocks: list[dict[str, Any]] = [
        header(f"Segments · {info.customers:,} customers"),
        context(
            f"Model {served.version} · sizes as trained on {as_text(info.source)}, data as of {info.snapshot_date} "
            f"(trained {info.trained_minute} UTC) · return time {terms.return_time} days, "
            f"return window {terms.return_window}, lost after {terms.lost_after}"
        ),
    ]
    texts = [
        f"*{s.name}* · {s.customers:,} customers ({share_text(s.share)}) · {share_text(s.revenue_share)} of revenue\n"
        f"_{s.description}_\n{_cap(s.typical(terms))}. _Definition:_ {s.definition}.\n"
        + (f"_Persona:_ {as_text(s.persona.line())}.\n" if s.persona is not None else "")
        + "\n".join(f"• {a}" for a in s.actions)
        for s in segs
    ]
    room = MAX_BLOCKS - len(blocks)
    if 2 * len(texts) <= room:  # a divider and a section each
        for t in texts:
            blocks += [{"type": "divider"}, section(t)]
    elif len(texts) <= room:  # no dividers
        blocks += [section(t) for t in texts]
    else:  # more segments than blocks: the most valuable in full, the rest named with their sizes
        shown = room - 1
        blocks += [section(t) for t in texts[:shown]]
        rest = segs[shown:]
        blocks.append(
            section(
                f"_…and {len(rest)} more:_ "
                + ", ".join(f"{s.name} ({s.customers:,})" for s in rest)
                + ". `/segment export <name>` lists their customers."
            )
        )
    text = "Segments: " + ", ".join(f"{s.name} {s.customers:,}" for s in segs)
    return {"text": cut(text, MAX_TEXT), "blocks": blocks}


def at_risk(summary: AtRiskSummary, terms: ShopTerms) -> Message:
    head = (
        f"*{summary.customers:,} customers at risk* ({share_text(summary.share_of_customers)} of "
        f"{summary.all_customers:,}), revenue at stake {summary.stake(terms.money)}"
    )
    lines = (
        "\n".join(
            f"• *{r.name}*: {r.customers:,} customers, {terms.money(r.revenue)} at stake" for r in summary.by_segment
        )
        or "• none"
    )
    blocks = [
        header("Churn risk"),
        section(head),
        section(lines),
        context(
            f"Model {summary.model_version}, data as of {summary.as_of} · {STAKE_NOTE} · at risk: {summary.definition}"
        ),
    ]
    if summary.customers:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button(
                        "Export at-risk customers",
                        "export_at_risk",
                        json.dumps({"model": summary.model_version}),
                        style="primary",
                    )
                ],
            }
        )
    text = f"At risk: {summary.customers:,} customers, revenue at stake {terms.money(summary.revenue)}"
    return {"text": text, "blocks": blocks}


def model_info(served: ServedModel) -> Message:
    info, terms = served.info, served.terms
    sil = "n/a" if info.silhouette is None else f"{info.silhouette:.3f}"
    fields = [
        ("Version", served.version),
        ("Trained", f"{info.trained_minute} UTC by {user(info.trained_by)}"),
        ("Data", as_text(info.source)),
        ("Customers", f"{info.customers:,} ({info.orders:,} orders, snapshot {info.snapshot_date})"),
        ("K", f"{info.k} (seed {info.seed})"),
        ("Silhouette", sil),
    ]
    blocks = [
        header(f"Model {served.version}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{hide_paths(v)}"} for k, v in fields]},
        section("*The shop's terms*\n" + "\n".join(f"• {line}" for line in terms.lines())),
        context(f"At risk: {served.risk_text}"),
    ]
    return {
        "text": f"Model {served.version}: {info.customers:,} customers, K={info.k}, trained {info.trained_at}",
        "blocks": blocks,
    }


def help_message(note: str | None = None, segment: str | None = None) -> Message:
    """The help; ``segment`` is a segment of the served model, so the export example works as typed."""
    lines = "\n".join(f"`{cmd.format(segment=segment or '<segment>')}` {what}" for cmd, what in HELP_EXAMPLES)
    blocks = []
    if note:
        blocks.append(section(note))
    blocks += [section("*Customer segments, in Slack.* Try:"), section(lines)]
    return {"text": (note + "\n" if note else "") + "Try /segment 30 2 150 or /segment help", "blocks": blocks}


def error_line(message: str) -> Message:
    """One line of refusal. It may echo what someone typed or a value from the data, so it is
    escaped whole: it never carries a link or a mention."""
    return {"text": hide_paths(as_text(message)), "blocks": [section(f":warning: {as_text(message)}")]}


def plain(text: str) -> Message:
    return {"text": hide_paths(text), "blocks": [section(text)]}


def retrain_result(version: str, trained: TrainedModel, previous: ServedModel | None) -> Message:
    info = trained.info
    other_data = ""
    if previous is not None and previous.info.source != info.source:
        other_data = (
            f"Trained on other data than {previous.version} ({as_text(previous.info.source)}): sizes are not compared"
        )
        previous = None
    renamed = dict(trained.changes.renamed) if trained.changes else {}
    before = {s.name: s.customers for s in previous.trained.segments} if previous else {}
    before.update({new: before[old] for old, new in renamed.items() if old in before})
    width = max(len(s.name) for s in trained.segments)
    rows = []
    for s in trained.segments:
        if not previous:
            change = ""
        elif s.name in before:
            d = s.customers - before[s.name]
            change = f"{'▲' if d > 0 else '▼'}{abs(d):,}" if d else "="
        else:
            change = "new"
        rows.append(f"{s.name:<{width}}  {s.customers:>9,}  {s.share:>6.1%}  {change}")
    table = "```\n" + "\n".join(rows) + "\n```"
    vs = f" · compared with {previous.version}" if previous else ""
    sil = f" · silhouette {info.silhouette:.3f}" if info.silhouette is not None else ""
    risk = trained.at_risk
    blocks = [
        header(f"Retrained: model {version} is now serving"),
        section(f"{info.customers:,} customers from {as_text(info.source)} · K={info.k}{sil}"),
        section(table),
        section(
            f"*At risk:* {risk.customers:,} customers ({share_text(risk.share_of_customers)}), revenue at stake "
            f"{risk.stake(trained.terms.money)}"
        ),
    ]
    if trained.changes is not None:
        blocks.append(context(" · ".join(trained.changes.lines())))
    if other_data:
        blocks.append(context(other_data))
    blocks.append(context(f"Trained by {user(info.trained_by)}{vs}"))
    return {"text": f"Retrained: model {version} is now serving ({info.customers:,} customers)", "blocks": blocks}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
